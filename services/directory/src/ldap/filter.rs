//! RFC 4515 search filters: a validator with precise errors, for the custom
//! filter an administrator saves (D5: "checked when saved"), and the
//! composition of the preset filters with that custom filter.
//!
//! ldap3 has a filter parser (`ldap3::parse_filter`) but it only says
//! "invalid", not where or why, and it is lenient in places RFC 4515 is not
//! (a bare `cn=x` without parentheses, an empty `(&)`). This module parses
//! the RFC 4515 grammar itself (with the attribute-description grammar of
//! RFC 4512) and reports the character position and what was expected;
//! then it also asks ldap3's parser, so a filter that passes here is one the
//! reader can send.

use std::fmt;

/// Why a filter is not a valid RFC 4515 filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError {
    /// 1-based position (in characters) where the problem is.
    pub position: usize,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

/// Nesting deeper than this is refused (no directory needs it, and the
/// parser is recursive).
const MAX_DEPTH: usize = 64;

/// Checks that `filter` is a valid RFC 4515 search filter, e.g.
/// `(&(department=Sales)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))`.
/// The error says where (1-based character position) and what is wrong.
/// Leading and trailing whitespace is ignored (the reader trims it too).
pub fn validate_filter(filter: &str) -> Result<(), String> {
    check_filter(filter).map_err(|e| e.to_string())
}

/// [`validate_filter`] with a structured error.
pub fn check_filter(filter: &str) -> Result<(), FilterError> {
    let trimmed = filter.trim();
    let offset = filter[..filter.len() - filter.trim_start().len()]
        .chars()
        .count();
    if trimmed.is_empty() {
        return Err(FilterError {
            position: 1,
            message: "the filter is empty".into(),
        });
    }
    let mut p = Parser {
        chars: trimmed.chars().collect(),
        pos: 0,
        depth: 0,
    };
    p.filter()
        .and_then(|()| {
            if p.pos < p.chars.len() {
                Err(p.err(format!(
                    "unexpected {} after the end of the filter (combine several filters with (&...) or (|...))",
                    p.describe_here()
                )))
            } else {
                Ok(())
            }
        })
        .map_err(|mut e| {
            e.position += offset;
            e
        })?;
    // What passes here must also be encodable by the client library.
    if ldap3::parse_filter(trimmed).is_err() {
        return Err(FilterError {
            position: offset + 1,
            message: "the LDAP client library cannot encode this filter".into(),
        });
    }
    Ok(())
}

/// `(&a b)` of the non-empty parts (trimmed); a single part is returned as
/// is. Parts are expected to be valid filters.
pub(crate) fn and_all(parts: &[&str]) -> String {
    let parts: Vec<&str> = parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect();
    match parts.len() {
        0 => "(objectClass=*)".to_string(),
        1 => parts[0].to_string(),
        _ => {
            let mut s = String::from("(&");
            for p in parts {
                s.push_str(p);
            }
            s.push(')');
            s
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

type PResult<T = ()> = Result<T, FilterError>;

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.chars.get(self.pos + k).copied()
    }

    fn err(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            position: self.pos + 1,
            message: message.into(),
        }
    }

    fn err_at(&self, pos: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            position: pos + 1,
            message: message.into(),
        }
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of the filter".to_string(),
            Some(c) => format!("'{c}'"),
        }
    }

    fn expect(&mut self, c: char, what: &str) -> PResult {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {what}, found {}", self.describe_here())))
        }
    }

    /// filter = "(" filtercomp ")"
    fn filter(&mut self) -> PResult {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(format!("filters nested more than {MAX_DEPTH} deep")));
        }
        let open = self.pos;
        if self.peek() != Some('(') {
            let hint = if self.pos == 0 && self.chars.contains(&'=') {
                " (a filter is enclosed in parentheses, e.g. (department=Sales))"
            } else {
                ""
            };
            return Err(self.err(format!(
                "expected '(', found {}{hint}",
                self.describe_here()
            )));
        }
        self.pos += 1;
        self.depth += 1;
        match self.peek() {
            Some('&') | Some('|') => {
                let op = self.peek().unwrap_or('&');
                self.pos += 1;
                let mut n = 0;
                while self.peek() == Some('(') {
                    self.filter()?;
                    n += 1;
                }
                if n == 0 {
                    return Err(self.err(format!(
                        "'{op}' needs at least one filter in parentheses, found {}",
                        self.describe_here()
                    )));
                }
            }
            Some('!') => {
                self.pos += 1;
                if self.peek() != Some('(') {
                    return Err(self.err(format!(
                        "'!' must be followed by one filter in parentheses, found {}",
                        self.describe_here()
                    )));
                }
                self.filter()?;
            }
            Some(')') => return Err(self.err("empty filter '()'")),
            None => return Err(self.err("unexpected end of the filter after '('")),
            _ => self.item()?,
        }
        self.depth -= 1;
        if self.peek() == Some(')') {
            self.pos += 1;
            Ok(())
        } else if self.peek().is_none() {
            Err(self.err(format!(
                "missing ')' to close the '(' at position {}",
                open + 1
            )))
        } else {
            Err(self.err(format!(
                "expected ')' to close the '(' at position {}, found {}",
                open + 1,
                self.describe_here()
            )))
        }
    }

    /// item = simple / present / substring / extensible
    fn item(&mut self) -> PResult {
        let start = self.pos;
        if self.peek() == Some(':') {
            // extensible without an attribute: [":dn"] ":" oid ":=" value
            self.dn_attrs()?;
            if self.peek() == Some(':') && self.peek_at(1) == Some('=') {
                return Err(self.err(
                    "an extensible match without an attribute needs a matching rule, e.g. (:caseExactMatch:=value)",
                ));
            }
            self.expect(':', "':' before the matching rule")?;
            self.oid("matching rule")?;
            return self.extensible_value();
        }
        let attr_start = self.pos;
        self.attribute_description()?;
        let attr: String = self.chars[attr_start..self.pos].iter().collect();
        match (self.peek(), self.peek_at(1)) {
            (Some('='), _) => {
                self.pos += 1;
                self.substring_or_equality(&attr)
            }
            (Some('~'), Some('=')) | (Some('>'), Some('=')) | (Some('<'), Some('=')) => {
                self.pos += 2;
                self.value(false)?;
                Ok(())
            }
            (Some(':'), _) => {
                self.dn_attrs()?;
                if self.peek() == Some(':') && self.peek_at(1) != Some('=') {
                    self.pos += 1;
                    self.oid("matching rule")?;
                }
                self.extensible_value()
            }
            (Some(c @ ('~' | '>' | '<')), _) => Err(self.err(format!(
                "'{c}' must be followed by '=' (the operators are =, ~=, >=, <= and :=)"
            ))),
            (None, _) => Err(self.err(format!(
                "unexpected end of the filter after attribute \"{attr}\""
            ))),
            (Some(')'), _) => Err(self.err(format!(
                "expected one of =, ~=, >=, <=, := after attribute \"{attr}\", found ')'"
            ))),
            (Some(c), _) => {
                let message = if start == self.pos {
                    format!("expected an attribute name, found '{c}'")
                } else {
                    format!(
                        "'{c}' is not allowed in attribute name \"{attr}\"; expected one of =, ~=, >=, <=, := after it"
                    )
                };
                Err(self.err(message))
            }
        }
    }

    /// dnattrs = ":dn". RFC 4515 lets it be written in any case, but the
    /// client library only encodes the lower-case form: say so.
    fn dn_attrs(&mut self) -> PResult<bool> {
        let is_dn = self.peek() == Some(':')
            && matches!(self.peek_at(1), Some('d' | 'D'))
            && matches!(self.peek_at(2), Some('n' | 'N'))
            && matches!(self.peek_at(3), Some(':') | None);
        if !is_dn {
            return Ok(false);
        }
        if self.peek_at(1) != Some('d') || self.peek_at(2) != Some('n') {
            return Err(self.err_at(self.pos + 1, "write ':dn' in lower case"));
        }
        self.pos += 3;
        Ok(true)
    }

    fn extensible_value(&mut self) -> PResult {
        if !(self.peek() == Some(':') && self.peek_at(1) == Some('=')) {
            return Err(self.err(format!(
                "expected ':=' in the extensible match, found {}",
                self.describe_here()
            )));
        }
        self.pos += 2;
        self.value(false)?;
        Ok(())
    }

    /// After `attr=`: a value, or `*` (presence), or substrings.
    fn substring_or_equality(&mut self, attr: &str) -> PResult {
        let mut pieces = 0; // values between stars
        let mut stars = 0;
        let mut last_empty_at: Option<usize> = None;
        loop {
            let before = self.pos;
            let n = self.value(true)?;
            if n == 0 && stars > 0 && self.peek() == Some('*') {
                // "**": an empty "any" substring.
                last_empty_at = Some(before);
            }
            if n > 0 {
                pieces += 1;
            }
            if self.peek() == Some('*') {
                stars += 1;
                self.pos += 1;
                continue;
            }
            break;
        }
        if let Some(at) = last_empty_at {
            return Err(self.err_at(
                at,
                format!("empty substring between two '*' in the value of \"{attr}\""),
            ));
        }
        let _ = pieces;
        Ok(())
    }

    /// valueencoding = *(normal / "\" HEX HEX); stops at `(`, `)`, `*`
    /// (a `*` is an error unless `star_ok`). Returns the number of value
    /// characters read.
    fn value(&mut self, star_ok: bool) -> PResult<usize> {
        let mut n = 0;
        loop {
            match self.peek() {
                None | Some(')') => return Ok(n),
                Some('(') => {
                    return Err(self.err(
                        "'(' in a value must be escaped as \\28",
                    ))
                }
                Some('*') if star_ok => return Ok(n),
                Some('*') => {
                    return Err(self.err(
                        "'*' is only allowed with '=' (presence or substrings); escape a literal '*' as \\2a",
                    ))
                }
                Some('\0') => return Err(self.err("a NUL character must be escaped as \\00")),
                Some('\\') => {
                    let h1 = self.peek_at(1);
                    let h2 = self.peek_at(2);
                    match (h1, h2) {
                        (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => {
                            self.pos += 3;
                            n += 1;
                        }
                        _ => {
                            return Err(self.err(
                                "'\\' must be followed by two hexadecimal digits (\\2a for '*', \\28 '(', \\29 ')', \\5c '\\')",
                            ))
                        }
                    }
                }
                Some(_) => {
                    self.pos += 1;
                    n += 1;
                }
            }
        }
    }

    /// attributedescription = attributetype *(";" option), RFC 4512.
    fn attribute_description(&mut self) -> PResult {
        self.oid("attribute name")?;
        while self.peek() == Some(';') {
            self.pos += 1;
            let start = self.pos;
            while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '-') {
                self.pos += 1;
            }
            if start == self.pos {
                return Err(self.err(format!(
                    "expected an attribute option after ';', found {}",
                    self.describe_here()
                )));
            }
        }
        Ok(())
    }

    /// oid = descr / numericoid: a name (a letter, then letters, digits,
    /// hyphens) or a dotted number without leading zeros.
    fn oid(&mut self, what: &str) -> PResult {
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() => {
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '-') {
                    self.pos += 1;
                }
                Ok(())
            }
            Some(c) if c.is_ascii_digit() => loop {
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    self.pos += 1;
                }
                if start == self.pos {
                    return Err(self.err(format!(
                        "expected a digit in the numeric OID of the {what}, found {}",
                        self.describe_here()
                    )));
                }
                if self.pos - start > 1 && self.chars[start] == '0' {
                    return Err(self.err_at(
                        start,
                        format!("a number in the OID of the {what} has a leading zero"),
                    ));
                }
                if self.peek() == Some('.') {
                    self.pos += 1;
                    continue;
                }
                if matches!(self.peek(), Some(c) if c.is_ascii_alphabetic() || c == '-') {
                    return Err(self.err(format!(
                        "a numeric OID of the {what} contains only digits and dots, found {}",
                        self.describe_here()
                    )));
                }
                return Ok(());
            },
            _ => Err(self.err(format!(
                "expected the {what} (a name starting with a letter, or a numeric OID), found {}",
                self.describe_here()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(f: &str) {
        if let Err(e) = check_filter(f) {
            panic!("{f:?} should be valid: {e}");
        }
    }

    fn bad(f: &str, position: usize, contains: &str) {
        match check_filter(f) {
            Ok(()) => panic!("{f:?} should be invalid"),
            Err(e) => {
                assert_eq!(e.position, position, "{f:?}: {e}");
                assert!(e.message.contains(contains), "{f:?}: {e}");
            }
        }
    }

    #[test]
    fn d5_filter_accepts_rfc4515_forms() {
        ok("(cn=Babs Jensen)");
        ok("(!(cn=Tim Howes))");
        ok("(&(objectClass=Person)(|(sn=Jensen)(cn=Babs J*)))");
        ok("(o=univ*of*mich*)");
        ok("(seeAlso=)");
        ok("(cn=*)");
        ok("(cn=*abc)");
        ok("(cn=abc*)");
        ok("(cn=*a*b*)");
        ok("(cn:caseExactMatch:=Fred Flintstone)");
        ok("(cn:=Betty Rubble)");
        ok("(sn:dn:2.4.6.8.10:=Barney Rubble)");
        ok("(o:dn:=Ace Industry)");
        ok("(:1.2.3:=Wilma Flintstone)");
        ok("(:dn:2.4.6.8.10:=Dino)");
        ok("(userAccountControl:1.2.840.113556.1.4.803:=2)");
        ok("(!(userAccountControl:1.2.840.113556.1.4.803:=2))");
        ok(r"(o=Parens R Us \28for all your parenthetical needs\29)");
        ok(r"(cn=*\2A*)");
        ok(r"(cn=\2a)");
        ok(r"(filename=C:\5cMyFile)");
        ok(r"(bin=\00\00\00\04)");
        ok(r"(sn=Lu\c4\8di\c4\87)");
        ok("(sn=Lučić)");
        ok("(1.3.6.1.4.1.1466.0=\\04\\02\\48\\69)");
        ok("(userCertificate;binary=*)");
        ok("(createTimestamp>=20240101000000Z)");
        ok("(uSNChanged<=1000)");
        ok("(cn~=jensen)");
        ok("  (department=Sales)\n");
        ok("(memberOf=CN=Staff\\2c Sales,OU=Groups,DC=corp,DC=example,DC=com)");
        ok("(&(&(&(&(a=1)))))");
    }

    #[test]
    fn d5_filter_reports_position_and_reason() {
        bad("", 1, "empty");
        bad("   ", 1, "empty");
        bad("cn=x", 1, "enclosed in parentheses");
        bad("(cn=x", 6, "missing ')'");
        bad("(cn=x))", 7, "after the end");
        bad("(cn=x)(sn=y)", 7, "combine");
        bad("()", 2, "empty filter");
        bad("(&)", 3, "at least one");
        bad("(|x)", 3, "at least one");
        bad("(!cn=x)", 3, "'!' must be followed");
        bad("(cn)", 4, "expected one of");
        bad("(=x)", 2, "attribute name");
        bad("(c n=x)", 3, "not allowed in attribute name");
        bad("(cn=a(b)", 6, "escaped as \\28");
        bad(r"(cn=\2)", 5, "two hexadecimal digits");
        bad(r"(cn=\zz)", 5, "two hexadecimal digits");
        bad(r"(cn=a\)", 6, "two hexadecimal digits");
        bad("(cn>x)", 4, "followed by '='");
        bad("(cn~=a*)", 7, "only allowed with '='");
        bad("(cn=a**b)", 7, "empty substring");
        bad("(cn:=a*)", 7, "only allowed with '='");
        bad("(:=x)", 2, "needs a matching rule");
        bad("(cn:1.2.03:=x)", 9, "leading zero");
        bad("(cn:1.2.x:=x)", 9, "expected a digit");
        bad("(:DN:2.4.6.8.10:=Dino)", 3, "lower case");
        bad("(cn;=x)", 5, "attribute option");
        bad(
            "(&(a=1)(b=2)",
            13,
            "missing ')' to close the '(' at position 1",
        );
        bad(
            "(|(a=1)(b=2)x)",
            13,
            "expected ')' to close the '(' at position 1",
        );
        // The position counts characters, after any leading whitespace.
        bad("  (cn=é", 8, "missing ')'");
    }

    #[test]
    fn d5_filter_refuses_absurd_nesting() {
        let deep = format!("{}(a=1){}", "(!".repeat(100), ")".repeat(100));
        let e = check_filter(&deep).unwrap_err();
        assert!(e.message.contains("nested"), "{e}");
    }

    #[test]
    fn d5_every_valid_filter_is_encodable_by_ldap3() {
        for f in [
            "(&(objectClass=user)(!(objectClass=computer)))",
            "(userAccountControl:1.2.840.113556.1.4.803:=2)",
            r"(cn=*\2a*)",
        ] {
            assert!(ldap3::parse_filter(f).is_ok(), "{f}");
        }
    }

    #[test]
    fn d5_custom_filter_is_anded() {
        assert_eq!(and_all(&["(a=1)", ""]), "(a=1)");
        assert_eq!(and_all(&["(a=1)", " (b=2) "]), "(&(a=1)(b=2))");
        assert_eq!(and_all(&[]), "(objectClass=*)");
    }
}
