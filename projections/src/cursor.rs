//! The one page token of every list (users, audit, sync runs and their
//! reports, directory objects, import review rows).

use std::fmt;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ProjectionError;

/// An opaque keyset cursor: the keys of the last row a page served (in the
/// list's order), as URL-safe base64 of a JSON array of strings. The next
/// page starts after that row, so pages stay stable while rows are added
/// or removed. A token this API did not return is refused as `invalid`
/// (400), never read as a silently different page.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

/// What a token that does not decode says.
const NOT_OURS: &str = "page is not a token this API returned";

impl Cursor {
    /// The token of the page after the row with these keys.
    pub fn after(keys: &[&str]) -> Cursor {
        let json = serde_json::to_vec(keys).unwrap_or_default();
        Cursor(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    /// A client's token, as it was given (read with [`Cursor::keys`]).
    pub fn token(token: &str) -> Cursor {
        Cursor(token.trim().to_string())
    }

    /// The `N` keys of a token of [`Cursor::after`]; anything else is
    /// `invalid`.
    pub fn keys<const N: usize>(&self) -> Result<[String; N], ProjectionError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.0)
            .map_err(|_| invalid())?;
        let keys: Vec<String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        keys.try_into().map_err(|_| invalid())
    }

    /// Reads a client's token of `N` keys.
    pub fn read<const N: usize>(token: &str) -> Result<[String; N], ProjectionError> {
        Cursor::token(token).keys()
    }

    /// A key that is a number (a position, a row number, a time).
    pub fn number(key: &str) -> Result<i64, ProjectionError> {
        key.parse().map_err(|_| invalid())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn invalid() -> ProjectionError {
    ProjectionError::Invalid(NOT_OURS.into())
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The token as text (`page.as_deref()` passes a page's cursor on).
impl std::ops::Deref for Cursor {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Cursor> for String {
    fn from(c: Cursor) -> String {
        c.0
    }
}

/// On the wire the token is a plain string.
impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Cursor(String::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_its_keys_and_refuses_other_tokens() {
        let c = Cursor::after(&["a@example.com", "0190"]);
        assert_eq!(
            Cursor::read::<2>(c.as_str()).unwrap(),
            ["a@example.com".to_string(), "0190".to_string()]
        );
        assert_eq!(serde_json::to_value(&c).unwrap(), c.as_str());
        // Another number of keys, not base64, not our JSON: invalid.
        assert!(Cursor::read::<1>(c.as_str()).is_err());
        for bad in ["!!", "bm90IGpzb24", ""] {
            let e = Cursor::read::<1>(bad).unwrap_err();
            assert_eq!(e.to_string(), NOT_OURS, "{bad}");
        }
        assert!(Cursor::number("12").is_ok() && Cursor::number("x").is_err());
    }
}
