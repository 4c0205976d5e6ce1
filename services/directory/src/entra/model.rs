//! Graph objects as Roster reads them, their mapping to directory objects
//! (D3.b-d for Entra: `mail` primary, `smtp:` aliases, givenName, surname,
//! mobilePhone, businessPhones, companyName, department, accountEnabled,
//! object id), and the state kept between runs for delta sync (B1).

use std::collections::{BTreeMap, BTreeSet};

use roster_domain::snapshot::{DirectoryObject, ObjectId, ObjectKind, Snapshot};
use roster_events::Profile;
use serde::{Deserialize, Serialize};

/// Exactly the user properties the mapping needs (`$select`).
pub const USER_SELECT: &str = "id,userPrincipalName,displayName,mail,proxyAddresses,givenName,surname,mobilePhone,businessPhones,companyName,department,accountEnabled";

/// Exactly the group properties the mapping needs (`$select`).
pub const GROUP_SELECT: &str = "id,displayName,mail,mailEnabled,proxyAddresses";

/// A user as Graph returns it with [`USER_SELECT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    pub id: String,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default, deserialize_with = "null_vec")]
    pub proxy_addresses: Vec<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub surname: Option<String>,
    #[serde(default)]
    pub mobile_phone: Option<String>,
    #[serde(default, deserialize_with = "null_vec")]
    pub business_phones: Vec<String>,
    #[serde(default)]
    pub company_name: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub account_enabled: Option<bool>,
}

/// A group as Graph returns it with [`GROUP_SELECT`]; `members` are the
/// ids of its direct members (users and groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GraphGroup {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub mail_enabled: Option<bool>,
    #[serde(default, deserialize_with = "null_vec")]
    pub proxy_addresses: Vec<String>,
    #[serde(default)]
    pub members: Vec<String>,
    /// The mail address of each member, by id, as the last member read
    /// gave it ("" for a member without one): a member outside the user
    /// filter is still a member of the list (D6, issue 12).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub member_mail: BTreeMap<String, String>,
}

impl GraphGroup {
    /// U4: only groups that carry a mail address become distribution lists.
    pub fn is_mail_enabled(&self) -> bool {
        self.mail_enabled.unwrap_or(false)
            && self.mail.as_deref().is_some_and(|m| !m.trim().is_empty())
    }
}

fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// A member as `/groups/{id}/members?$select=id` lists it.
#[derive(Debug, Deserialize)]
pub struct MemberRef {
    pub id: String,
    #[serde(default)]
    pub mail: Option<String>,
}

fn clean(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl GraphUser {
    /// D3.b-d: the directory object of a user. `businessPhones` fills the
    /// home-phone field (Graph has no home phone; the office number is the
    /// closest landline administrators expect to see).
    pub fn to_object(&self) -> DirectoryObject {
        DirectoryObject {
            id: ObjectId::new(&self.id),
            kind: ObjectKind::User,
            dn: clean(&self.user_principal_name),
            display_name: clean(&self.display_name),
            mail: clean(&self.mail),
            proxy_addresses: self.proxy_addresses.clone(),
            profile: Profile {
                first_name: clean(&self.given_name),
                last_name: clean(&self.surname),
                home_phone: self
                    .business_phones
                    .iter()
                    .map(|p| p.trim())
                    .find(|p| !p.is_empty())
                    .map(str::to_string),
                mobile: clean(&self.mobile_phone),
                company: clean(&self.company_name),
                department: clean(&self.department),
                notes: None,
            },
            disabled: self.account_enabled == Some(false),
            members: vec![],
            member_addresses: Box::default(),
        }
    }
}

/// The directory as a read left it, and where the next delta round starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeltaState {
    /// A fingerprint of the settings the state was read with: a state read
    /// with other settings (tenant, client, filter, endpoints) is not used.
    pub fingerprint: String,
    /// `@odata.deltaLink` of `/users/delta`.
    pub users_delta: String,
    /// `@odata.deltaLink` of `/groups/delta`.
    pub groups_delta: String,
    /// Unix seconds of the last full read (the backstop counts from it).
    pub full_read_at: i64,
    pub users: BTreeMap<String, GraphUser>,
    /// Every group delta reported (mail-enabled or not), with members.
    pub groups: BTreeMap<String, GraphGroup>,
}

impl DeltaState {
    /// The complete snapshot: users, and the mail-enabled groups with their
    /// members resolved to objects in the snapshot. Consumes the state: user
    /// objects are made as it is freed, so a large directory is not held
    /// twice.
    pub fn into_snapshot(self) -> Snapshot {
        let DeltaState { users, groups, .. } = self;
        let mut objects = Vec::with_capacity(users.len() + groups.len());
        for (_, u) in users {
            objects.push(u.to_object());
        }
        snapshot_with_groups(objects, groups.values())
    }
}

/// Adds the mail-enabled groups to `objects` (the users), members limited
/// to objects in the snapshot, as the LDAP reader does.
pub fn snapshot_with_groups<'a>(
    mut objects: Vec<DirectoryObject>,
    groups: impl Iterator<Item = &'a GraphGroup> + Clone,
) -> Snapshot {
    let mut ids: BTreeSet<String> = objects.iter().map(|o| o.id.0.clone()).collect();
    for g in groups.clone().filter(|g| g.is_mail_enabled()) {
        ids.insert(ObjectId::new(&g.id).0);
    }
    for g in groups.filter(|g| g.is_mail_enabled()) {
        let mut members: Vec<ObjectId> = g
            .members
            .iter()
            .map(ObjectId::new)
            .filter(|m| ids.contains(&m.0))
            .collect();
        members.sort();
        members.dedup();
        // Members the snapshot does not hold (outside the user filter):
        // their addresses, so that the list keeps them (D6).
        let mut member_addresses: Vec<String> = g
            .members
            .iter()
            .filter(|m| !ids.contains(&ObjectId::new(m).0))
            .filter_map(|m| g.member_mail.get(m))
            .filter_map(|m| clean(&Some(m.clone())))
            .collect();
        member_addresses.sort();
        member_addresses.dedup();
        objects.push(DirectoryObject {
            id: ObjectId::new(&g.id),
            kind: ObjectKind::Group,
            dn: None,
            display_name: clean(&g.display_name),
            mail: clean(&g.mail),
            proxy_addresses: g.proxy_addresses.clone(),
            profile: Profile::default(),
            disabled: false,
            members,
            member_addresses: member_addresses.into(),
        });
    }
    Snapshot { objects }
}

/// Overlays the properties present in a delta item on `base` (Graph may
/// return only the changed ones): keys absent from `item` keep their value.
pub fn merge<T: Serialize + serde::de::DeserializeOwned>(
    base: Option<&T>,
    item: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, serde_json::Error> {
    let mut v = match base {
        Some(b) => serde_json::to_value(b)?,
        None => serde_json::Value::Object(Default::default()),
    };
    if let serde_json::Value::Object(m) = &mut v {
        for (k, val) in item {
            if k.starts_with('@') || k.contains("@delta") || k.contains("@odata") {
                continue;
            }
            m.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d3b_d3d_entra_user_mapping() {
        let u: GraphUser = serde_json::from_value(serde_json::json!({
            "id": "6E2A-AB",
            "userPrincipalName": "ann@contoso.com",
            "mail": "Ann@Contoso.com",
            "proxyAddresses": ["SMTP:ann@contoso.com", "smtp:a@contoso.com", "SIP:ann@contoso.com"],
            "givenName": "Ann", "surname": "Lee", "mobilePhone": "+1 555",
            "businessPhones": ["+1 444"], "companyName": "Contoso", "department": "Sales",
            "accountEnabled": false
        }))
        .unwrap();
        let o = u.to_object();
        assert_eq!(o.id.as_str(), "6e2a-ab");
        assert_eq!(o.mail.as_deref(), Some("Ann@Contoso.com"));
        assert_eq!(o.profile.first_name.as_deref(), Some("Ann"));
        assert_eq!(o.profile.last_name.as_deref(), Some("Lee"));
        assert_eq!(o.profile.mobile.as_deref(), Some("+1 555"));
        assert_eq!(o.profile.home_phone.as_deref(), Some("+1 444"));
        assert_eq!(o.profile.company.as_deref(), Some("Contoso"));
        assert_eq!(o.profile.department.as_deref(), Some("Sales"));
        assert!(o.disabled);
        assert_eq!(o.proxy_addresses.len(), 3);
    }

    #[test]
    fn b1_merge_keeps_properties_a_delta_item_leaves_out() {
        let base = GraphUser {
            id: "1".into(),
            mail: Some("a@x.com".into()),
            department: Some("Sales".into()),
            ..Default::default()
        };
        let item = serde_json::json!({"id": "1", "department": null, "givenName": "A"});
        let merged: GraphUser = merge(Some(&base), item.as_object().unwrap()).unwrap();
        assert_eq!(merged.mail.as_deref(), Some("a@x.com"));
        assert_eq!(merged.department, None);
        assert_eq!(merged.given_name.as_deref(), Some("A"));
    }
}
