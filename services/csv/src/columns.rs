//! The columns an import understands and the header names that map to them
//! (M2: "header names matched case-insensitively with common synonyms").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A column of the import/export format. The canonical names (see
/// [`Column::name`]) are the header of exports and of the sample CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    /// The user's primary address (required).
    Email,
    /// Given name.
    FirstName,
    /// Family name.
    LastName,
    /// Secondary addresses, several in one cell.
    Aliases,
    /// Home phone.
    HomePhone,
    /// Mobile phone.
    Mobile,
    /// Company.
    Company,
    /// Department.
    Department,
    /// Free-text notes; the only field that may span several lines.
    Notes,
}

/// Longest first name, last name, company or department, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest home phone or mobile, in characters.
pub const MAX_PHONE_CHARS: usize = 64;
/// Longest notes, in characters.
pub const MAX_NOTES_CHARS: usize = 4096;

impl Column {
    /// Every column, in the canonical order of exports and the sample CSV.
    pub const ALL: [Column; 9] = [
        Column::Email,
        Column::FirstName,
        Column::LastName,
        Column::Aliases,
        Column::HomePhone,
        Column::Mobile,
        Column::Company,
        Column::Department,
        Column::Notes,
    ];

    /// The canonical header name; for profile fields also the field name of
    /// [`roster_events::Profile::fields`].
    pub fn name(self) -> &'static str {
        match self {
            Column::Email => "email",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::Aliases => "aliases",
            Column::HomePhone => "home_phone",
            Column::Mobile => "mobile",
            Column::Company => "company",
            Column::Department => "department",
            Column::Notes => "notes",
        }
    }

    /// The header names accepted for this column, as shown to people.
    /// Matching ignores case, surrounding spaces and the characters
    /// space, `_`, `-` and `.` (so `First_Name`, `first-name` and
    /// `FirstName` all match "first name").
    pub fn accepted_names(self) -> &'static [&'static str] {
        match self {
            Column::Email => &[
                "email",
                "e-mail",
                "mail",
                "email address",
                "primary email",
                "primary email address",
                "primary address",
                "primary smtp address",
                "address",
            ],
            Column::FirstName => &["first name", "given name", "givenName", "forename"],
            Column::LastName => &["last name", "surname", "sn", "family name"],
            Column::Aliases => &[
                "aliases",
                "alias",
                "secondary addresses",
                "secondary address",
                "secondary emails",
                "secondary email",
                "proxyAddresses",
                "other addresses",
            ],
            Column::HomePhone => &["home phone", "homePhone", "phone"],
            Column::Mobile => &["mobile", "mobile phone", "cell", "cell phone"],
            Column::Company => &["company", "organization", "organisation"],
            Column::Department => &["department"],
            Column::Notes => &["notes", "note", "info", "comments", "comment"],
        }
    }

    /// The column a header cell names, if any (see [`Column::accepted_names`]).
    pub fn from_header(header: &str) -> Option<Column> {
        let key = header_key(header);
        if key.is_empty() {
            return None;
        }
        Column::ALL.into_iter().find(|c| {
            c.accepted_names()
                .iter()
                .any(|name| header_key(name) == key)
        })
    }

    /// Generic names that also mean something else in other exports (a
    /// postal "Address", an office "Phone"). Such a name maps to its column
    /// only when no other header cell names the column: with both `Email`
    /// and `Address`, `Address` is ignored (with a warning) rather than
    /// being a duplicate.
    pub fn is_weak_name(header: &str) -> bool {
        matches!(header_key(header).as_str(), "address" | "phone")
    }

    /// The longest value allowed, in characters; `None` for the address
    /// columns, whose limits are those of [`roster_events::Address`].
    pub fn max_chars(self) -> Option<usize> {
        match self {
            Column::Email | Column::Aliases => None,
            Column::HomePhone | Column::Mobile => Some(MAX_PHONE_CHARS),
            Column::Notes => Some(MAX_NOTES_CHARS),
            Column::FirstName | Column::LastName | Column::Company | Column::Department => {
                Some(MAX_NAME_CHARS)
            }
        }
    }

    /// Whether the column holds a profile field (not an address).
    pub fn is_profile_field(self) -> bool {
        !matches!(self, Column::Email | Column::Aliases)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Lower case, without a BOM, spaces, `_`, `-` or `.`.
fn header_key(header: &str) -> String {
    header
        .trim_start_matches('\u{FEFF}')
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '_' | '-' | '.')))
        .flat_map(char::to_lowercase)
        .collect()
}

/// How the header line of a file maps to columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderCell {
    /// The header cell as written in the file, trimmed.
    pub name: String,
    /// The column it maps to, or `None` when it is ignored.
    pub column: Option<Column>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m2_header_synonyms_map_case_and_punctuation_insensitively() {
        for (header, want) in [
            ("Email", Column::Email),
            (" E-Mail ", Column::Email),
            ("E_MAIL", Column::Email),
            ("Primary SMTP Address", Column::Email),
            ("primary_email", Column::Email),
            ("\u{FEFF}email", Column::Email),
            ("Address", Column::Email),
            ("givenName", Column::FirstName),
            ("First.Name", Column::FirstName),
            ("firstname", Column::FirstName),
            ("SN", Column::LastName),
            ("Family Name", Column::LastName),
            ("proxyAddresses", Column::Aliases),
            ("Other Addresses", Column::Aliases),
            ("alias", Column::Aliases),
            ("homePhone", Column::HomePhone),
            ("Phone", Column::HomePhone),
            ("Cell", Column::Mobile),
            ("Mobile Phone", Column::Mobile),
            ("Organization", Column::Company),
            ("department", Column::Department),
            ("Info", Column::Notes),
            ("Comments", Column::Notes),
        ] {
            assert_eq!(Column::from_header(header), Some(want), "{header:?}");
        }
        for header in ["", "  ", "Title", "Manager", "email2"] {
            assert_eq!(Column::from_header(header), None, "{header:?}");
        }
    }

    #[test]
    fn m2_canonical_names_map_to_themselves() {
        for c in Column::ALL {
            assert_eq!(Column::from_header(c.name()), Some(c));
        }
    }

    #[test]
    fn accepted_names_are_unambiguous() {
        let mut seen = std::collections::HashMap::new();
        for c in Column::ALL {
            for name in c.accepted_names() {
                if let Some(other) = seen.insert(header_key(name), c) {
                    assert_eq!(other, c, "{name} maps to both {other} and {c}");
                }
            }
        }
    }
}
