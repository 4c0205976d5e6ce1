//! The profile fields of one row, as a patch: a column the file does not
//! have leaves the field unchanged; an empty cell clears it (U2, M2).

use roster_events::Profile;
use serde::{Deserialize, Deserializer, Serialize};

use crate::columns::Column;

/// The profile fields a row sets. For each field:
/// - `None`: the file has no such column; an update leaves the field as it is;
/// - `Some(None)`: the cell is empty; the field is cleared;
/// - `Some(Some(v))`: the field becomes `v` (trimmed, never empty).
///
/// In JSON, an absent field is left out and a cleared one is `null`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "Profile fields (U2) to change: `null` clears one; one left out stays as it is."
    )
)]
pub struct ProfilePatch {
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub first_name: Option<Option<String>>,
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last_name: Option<Option<String>>,
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub home_phone: Option<Option<String>>,
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub mobile: Option<Option<String>>,
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub company: Option<Option<String>>,
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub department: Option<Option<String>>,
    /// Left out (no such column): unchanged; `null` (an empty cell): cleared.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub notes: Option<Option<String>>,
}

/// A field that is present in JSON is `Some`, even when `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A patch that sets every field to the profile's value (cleared where the
/// profile has none): a form that shows and submits the whole profile.
impl From<Profile> for ProfilePatch {
    fn from(p: Profile) -> Self {
        ProfilePatch {
            first_name: Some(p.first_name),
            last_name: Some(p.last_name),
            home_phone: Some(p.home_phone),
            mobile: Some(p.mobile),
            company: Some(p.company),
            department: Some(p.department),
            notes: Some(p.notes),
        }
    }
}

impl ProfilePatch {
    /// The slot of a profile column; `None` for the address columns.
    pub fn get(&self, column: Column) -> Option<&Option<Option<String>>> {
        Some(match column {
            Column::FirstName => &self.first_name,
            Column::LastName => &self.last_name,
            Column::HomePhone => &self.home_phone,
            Column::Mobile => &self.mobile,
            Column::Company => &self.company,
            Column::Department => &self.department,
            Column::Notes => &self.notes,
            Column::Email | Column::Aliases => return None,
        })
    }

    /// The mutable slot of a profile column; `None` for the address columns.
    pub fn get_mut(&mut self, column: Column) -> Option<&mut Option<Option<String>>> {
        Some(match column {
            Column::FirstName => &mut self.first_name,
            Column::LastName => &mut self.last_name,
            Column::HomePhone => &mut self.home_phone,
            Column::Mobile => &mut self.mobile,
            Column::Company => &mut self.company,
            Column::Department => &mut self.department,
            Column::Notes => &mut self.notes,
            Column::Email | Column::Aliases => return None,
        })
    }

    /// Whether the patch touches no field (the file has no profile column).
    pub fn is_empty(&self) -> bool {
        Column::ALL
            .into_iter()
            .filter_map(|c| self.get(c))
            .all(Option::is_none)
    }

    /// The profile of a new user: fields the file does not set are unset.
    pub fn to_new_profile(&self) -> Profile {
        self.applied_to(&Profile::default())
    }

    /// `current` with this patch applied.
    pub fn applied_to(&self, current: &Profile) -> Profile {
        let mut next = current.clone();
        self.apply(&mut next);
        next
    }

    /// Applies the patch to `profile` and returns the names of the fields
    /// that changed (the names of [`Profile::fields`]), in canonical order.
    /// An empty list means the row changes nothing ("unchanged" in review).
    pub fn apply(&self, profile: &mut Profile) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let slots = [
            (Column::FirstName, &mut profile.first_name),
            (Column::LastName, &mut profile.last_name),
            (Column::HomePhone, &mut profile.home_phone),
            (Column::Mobile, &mut profile.mobile),
            (Column::Company, &mut profile.company),
            (Column::Department, &mut profile.department),
            (Column::Notes, &mut profile.notes),
        ];
        for (column, slot) in slots {
            if let Some(Some(value)) = self.get(column) {
                if slot != value {
                    slot.clone_from(value);
                    changed.push(column.name());
                }
            }
        }
        changed
    }

    /// The names of the fields that applying the patch to `current` would change.
    pub fn changes(&self, current: &Profile) -> Vec<&'static str> {
        self.apply(&mut current.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            first_name: Some("Anna".into()),
            last_name: Some("Berg".into()),
            mobile: Some("0170 1234567".into()),
            ..Profile::default()
        }
    }

    #[test]
    fn m2_absent_column_leaves_field_unchanged_and_empty_cell_clears_it() {
        let patch = ProfilePatch {
            first_name: Some(Some("Anne".into())),
            mobile: Some(None),
            ..ProfilePatch::default()
        };
        let mut p = profile();
        assert_eq!(patch.apply(&mut p), vec!["first_name", "mobile"]);
        assert_eq!(p.first_name.as_deref(), Some("Anne"));
        assert_eq!(p.last_name.as_deref(), Some("Berg"), "no last-name column");
        assert_eq!(p.mobile, None, "empty mobile cell");
        assert!(
            patch.changes(&p).is_empty(),
            "applying twice changes nothing"
        );
    }

    #[test]
    fn m2_new_profile_leaves_absent_fields_unset() {
        let patch = ProfilePatch {
            company: Some(Some("Acme".into())),
            notes: Some(None),
            ..ProfilePatch::default()
        };
        let p = patch.to_new_profile();
        assert_eq!(p.company.as_deref(), Some("Acme"));
        assert_eq!(p.notes, None);
        assert!(!patch.is_empty());
        assert!(ProfilePatch::default().is_empty());
    }

    #[test]
    fn json_keeps_absent_and_cleared_apart() {
        let patch = ProfilePatch {
            first_name: Some(Some("Anna".into())),
            notes: Some(None),
            ..ProfilePatch::default()
        };
        let json = serde_json::to_string(&patch).unwrap();
        assert_eq!(json, r#"{"first_name":"Anna","notes":null}"#);
        let back: ProfilePatch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, patch);
    }
}
