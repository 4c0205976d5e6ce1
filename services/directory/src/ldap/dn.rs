//! Distinguished names compared the way a directory compares them.
//!
//! One server can spell the same DN differently: an entry stored as
//! `cn=Doe\2C John,...` can appear in a group's `member` as
//! `cn=Doe\, John,...`, attribute types come in any case (`CN=` / `cn=`),
//! and spaces around `,`, `+` and `=` are insignificant (TESTING.md,
//! "Directory differences that bite"). Group members are resolved to
//! snapshot objects by comparing [`normalize_dn`] keys only.

/// A canonical key for `dn` (RFC 4514): attribute types in lower case (the
/// common numeric OIDs replaced by their names), values unescaped (`\,`,
/// `\2C`, `\"`...), leading and trailing spaces dropped, runs of spaces
/// collapsed and letters lower-cased (case-ignore matching, as the naming
/// attributes `cn`, `ou`, `dc`, `o` use), the values of a multi-valued RDN
/// sorted; then re-escaped so that the key stays unambiguous. Values in
/// `#hex` (BER) form are kept as lower-case hex. Text that is not a DN is
/// returned trimmed and lower-cased. Equal keys mean the same entry.
pub fn normalize_dn(dn: &str) -> String {
    plain_key(dn.trim()).unwrap_or_else(|| parsed_key(dn))
}

/// [`normalize_dn`] by the full parse.
fn parsed_key(dn: &str) -> String {
    match parse(dn.trim()) {
        Some(rdns) => {
            let mut out = String::with_capacity(dn.len());
            for (i, mut avas) in rdns.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                avas.sort();
                for (j, (ty, value)) in avas.into_iter().enumerate() {
                    if j > 0 {
                        out.push('+');
                    }
                    out.push_str(&ty);
                    out.push('=');
                    escape_into(&value, &mut out);
                }
            }
            out
        }
        None => dn.trim().to_lowercase(),
    }
}

type Ava = (String, String);

/// [`normalize_dn`]'s key for the DNs nearly every directory holds, in one
/// pass and one allocation (issue 17: every object's DN is keyed on every
/// read): printable ASCII, single-valued RDNs whose types are names, and
/// values with nothing to unescape or re-escape. `None` for anything else
/// (escapes, `+`, `#`, quotes, numeric or `OID.` types, `=` in a value,
/// other whitespace, non-ASCII), which the full parse handles.
fn plain_key(dn: &str) -> Option<String> {
    let plain = |c: &u8| (b' '..=b'~').contains(c) && !b"\\+#\"<>;".contains(c);
    if dn.is_empty() || !dn.as_bytes().iter().all(plain) {
        return None;
    }
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in dn.split(',').enumerate() {
        let (ty, value) = rdn.split_once('=')?;
        let ty = ty.trim_matches(' ');
        if !ty.starts_with(|c: char| c.is_ascii_alphabetic())
            || !ty.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            || value.contains('=')
        {
            return None;
        }
        if i > 0 {
            out.push(',');
        }
        out.extend(ty.chars().map(|c| c.to_ascii_lowercase()));
        out.push('=');
        for (k, word) in value.split(' ').filter(|w| !w.is_empty()).enumerate() {
            if k > 0 {
                out.push(' ');
            }
            out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
        }
    }
    Some(out)
}

/// Checks that `dn` is a distinguished name in the string form of RFC 4514:
/// one or more RDNs separated by `,`, each one or more `type=value` pairs
/// joined by `+`; a type is a name (a letter, then letters, digits and
/// hyphens) or a numeric OID; in a value the characters `"`, `+`, `,`, `;`,
/// `<`, `>` and `\` are escaped with `\`, and `#` starts a hex (BER) value.
/// The error says what is wrong and at which character (from 1).
pub fn validate_dn(dn: &str) -> Result<(), String> {
    let chars: Vec<(usize, char)> = dn.char_indices().collect();
    if dn.trim().is_empty() {
        return Err("it is empty".into());
    }
    let at = |k: usize| k + 1;
    let mut i = 0;
    loop {
        // attribute type
        while i < chars.len() && chars[i].1 == ' ' {
            i += 1;
        }
        let start = i;
        while i < chars.len() && !matches!(chars[i].1, '=' | ',' | '+') {
            i += 1;
        }
        let ty: String = chars[start..i].iter().map(|c| c.1).collect();
        let ty = ty.trim_end();
        if ty.is_empty() {
            return Err(format!(
                "an attribute type is missing at character {} (an empty RDN, e.g. \",,\"?)",
                at(start)
            ));
        }
        if i >= chars.len() || chars[i].1 != '=' {
            return Err(format!(
                "\"=\" is missing after the attribute type {ty:?} at character {}",
                at(start)
            ));
        }
        let ty = ty
            .strip_prefix("OID.")
            .or_else(|| ty.strip_prefix("oid."))
            .unwrap_or(ty);
        let descr = ty.starts_with(|c: char| c.is_ascii_alphabetic())
            && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let oid = ty
            .split('.')
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !descr && !oid {
            return Err(format!(
                "{ty:?} at character {} is not an attribute type (a name or a numeric OID)",
                at(start)
            ));
        }
        i += 1;
        // attribute value
        while i < chars.len() && chars[i].1 == ' ' {
            i += 1;
        }
        if i < chars.len() && chars[i].1 == '#' {
            let start = i;
            i += 1;
            let mut digits = 0;
            while i < chars.len() && !matches!(chars[i].1, ',' | '+') {
                if chars[i].1 == ' ' {
                    break;
                }
                if !chars[i].1.is_ascii_hexdigit() {
                    return Err(format!(
                        "the hex value at character {} has a character that is not a hex digit",
                        at(start)
                    ));
                }
                digits += 1;
                i += 1;
            }
            if digits == 0 || digits % 2 != 0 {
                return Err(format!(
                    "the hex value at character {} needs an even number of hex digits",
                    at(start)
                ));
            }
            while i < chars.len() && chars[i].1 == ' ' {
                i += 1;
            }
        } else {
            while i < chars.len() && !matches!(chars[i].1, ',' | '+') {
                match chars[i].1 {
                    '\\' => {
                        let next = chars.get(i + 1).map(|c| c.1);
                        let hex = |k: usize| chars.get(k).is_some_and(|c| c.1.is_ascii_hexdigit());
                        match next {
                            Some(c) if c.is_ascii_hexdigit() && hex(i + 2) => i += 3,
                            Some(
                                ' ' | '"' | '#' | '+' | ',' | ';' | '<' | '=' | '>' | '\\',
                            ) => i += 2,
                            _ => {
                                return Err(format!(
                                    "the \\ at character {} escapes nothing valid (use \\, \\+ \\\\ or two hex digits)",
                                    at(i)
                                ))
                            }
                        }
                    }
                    c @ ('"' | ';' | '<' | '>') => {
                        return Err(format!(
                            "{c:?} at character {} must be escaped with \\",
                            at(i)
                        ))
                    }
                    _ => i += 1,
                }
            }
        }
        if i >= chars.len() {
            return Ok(());
        }
        // `,` or `+`: another RDN or AVA follows.
        if i + 1 >= chars.len() || chars[i + 1..].iter().all(|c| c.1 == ' ') {
            return Err(format!(
                "the DN ends with {:?} at character {}",
                chars[i].1,
                at(i)
            ));
        }
        i += 1;
    }
}

/// Splits `dn` into RDNs of (type, canonical value) pairs; `None` when it
/// is not a DN.
fn parse(dn: &str) -> Option<Vec<Vec<Ava>>> {
    let b = dn.as_bytes();
    let mut rdns: Vec<Vec<Ava>> = Vec::new();
    if b.is_empty() {
        return Some(rdns);
    }
    let mut i = 0;
    let mut rdn: Vec<Ava> = Vec::new();
    loop {
        // attribute type
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && b[i] != b'+' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        let ty = canonical_type(dn[start..i].trim())?;
        i += 1;
        // attribute value
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'#' {
            let start = i;
            while i < b.len() && b[i] != b',' && b[i] != b'+' {
                i += 1;
            }
            dn[start..i].trim().to_ascii_lowercase()
        } else {
            let mut bytes: Vec<u8> = Vec::new();
            while i < b.len() && b[i] != b',' && b[i] != b'+' {
                if b[i] == b'\\' {
                    let h = |k: usize| b.get(k).copied().and_then(hex_val);
                    if let (Some(hi), Some(lo)) = (h(i + 1), h(i + 2)) {
                        bytes.push(hi << 4 | lo);
                        i += 3;
                    } else if i + 1 < b.len() {
                        // `\,` and the like; a multi-byte character after a
                        // backslash is copied whole by the next iterations.
                        bytes.push(b[i + 1]);
                        i += 2;
                    } else {
                        return None;
                    }
                } else {
                    bytes.push(b[i]);
                    i += 1;
                }
            }
            canonical_value(&String::from_utf8_lossy(&bytes))
        };
        rdn.push((ty, value));
        if i >= b.len() {
            rdns.push(rdn);
            return Some(rdns);
        }
        if b[i] == b',' {
            rdns.push(std::mem::take(&mut rdn));
        }
        i += 1;
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lower case, `OID.` prefix dropped, the naming attributes' OIDs named.
fn canonical_type(ty: &str) -> Option<String> {
    if ty.is_empty() {
        return None;
    }
    let ty = ty
        .strip_prefix("OID.")
        .or_else(|| ty.strip_prefix("oid."))
        .unwrap_or(ty);
    let named = match ty {
        "2.5.4.3" => "cn",
        "2.5.4.11" => "ou",
        "2.5.4.10" => "o",
        "2.5.4.6" => "c",
        "2.5.4.7" => "l",
        "2.5.4.8" => "st",
        "2.5.4.9" => "street",
        "0.9.2342.19200300.100.1.25" => "dc",
        "0.9.2342.19200300.100.1.1" => "uid",
        other => return Some(other.to_ascii_lowercase()),
    };
    Some(named.to_string())
}

/// Case-ignore with insignificant spaces: trimmed, runs of whitespace as one
/// space, lower case.
fn canonical_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for word in v.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
    out
}

/// Escapes what RFC 4514 requires (and `=`), so that keys stay unambiguous.
fn escape_into(value: &str, out: &mut String) {
    for (k, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if k == 0 => out.push_str("\\#"),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_dn as n;
    use super::validate_dn;

    /// Issue 17: the one-pass key of plain DNs is the full parse's key,
    /// for every DN of an alphabet of the characters that matter (spaces,
    /// separators, escapes, `#`, `=`, quotes, case, digits, non-ASCII).
    #[test]
    fn d6_the_plain_key_is_the_parsed_key() {
        let types = [
            "cn",
            "CN",
            "ou",
            "Dc",
            "x-y",
            "2.5.4.3",
            "OID.2.5.4.11",
            "c n",
            "",
        ];
        let plain_chars: Vec<char> = "aBz19 -_.".chars().collect();
        let rare_chars: Vec<char> = ",=+\\#\";<>\té".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut plain = 0;
        for _ in 0..100_000 {
            let rdns: Vec<String> = (0..1 + next(4))
                .map(|_| {
                    let pad = |n: usize| " ".repeat(n);
                    let value: String = (0..next(10))
                        .map(|_| match next(20) {
                            0 => rare_chars[next(rare_chars.len())],
                            _ => plain_chars[next(plain_chars.len())],
                        })
                        .collect();
                    format!(
                        "{}{}{}={}{value}",
                        pad(next(2)),
                        types[next(types.len())],
                        pad(next(2)),
                        pad(next(2))
                    )
                })
                .collect();
            let dn = rdns.join(",");
            if let Some(key) = super::plain_key(dn.trim()) {
                plain += 1;
                assert_eq!(key, super::parsed_key(&dn), "{dn:?}");
            }
        }
        for dn in [
            "CN=Doe John , OU=People,DC=Example,DC=com",
            "cn=  a   b ,dc=x",
            "uid=jdoe,ou=users,dc=corp,dc=example",
            "cn=,dc=x",
        ] {
            assert_eq!(super::plain_key(dn), Some(super::parsed_key(dn)), "{dn}");
        }
        assert!(
            plain > 10_000,
            "the generator makes plain DNs too ({plain})"
        );
    }

    #[test]
    fn d5_base_dns_are_checked_per_rfc_4514() {
        for ok in [
            "dc=example,dc=com",
            "ou=Roster, dc=corp",
            r"cn=Doe\, John,ou=People,dc=example,dc=com",
            r"cn=Zo\C3\AB+uid=z,dc=a",
            "2.5.4.3=x,dc=a",
            "OID.2.5.4.11=Sales,o=Acme",
            "cn=#04024869,dc=x",
            "cn=a=b,dc=x",
            "CN=Users,DC=corp,DC=example",
        ] {
            assert_eq!(validate_dn(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("ou=Roster,,dc=corp", "character 11"),
            ("", "empty"),
            ("dc=example,", "ends with"),
            ("ou=Roster,dc", "\"=\" is missing"),
            ("1ou=x,dc=a", "not an attribute type"),
            ("cn=a;b,dc=x", "must be escaped"),
            (r"cn=a\qb,dc=x", "escapes nothing"),
            ("cn=#123,dc=x", "even number"),
            ("example.com", "\"=\" is missing"),
            ("cn=x+,dc=a", "missing"),
        ] {
            let e = validate_dn(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn d3d_escaped_comma_spellings_are_one_dn() {
        let stored = r"cn=Doe\2C John,ou=People,dc=example,dc=com";
        let member = r"CN=Doe\, John, OU=People,DC=example, DC=com";
        assert_eq!(n(stored), n(member));
        assert_eq!(n(stored), r"cn=doe\, john,ou=people,dc=example,dc=com");
        assert_ne!(n(stored), n("cn=Doe,cn=John,ou=People,dc=example,dc=com"));
    }

    #[test]
    fn d3d_case_spaces_and_oids_are_insignificant() {
        assert_eq!(
            n("CN=Ada  Lovelace ,OU=People,DC=Example,DC=COM"),
            n("cn=ada lovelace,ou=people,dc=example,dc=com")
        );
        assert_eq!(n("2.5.4.3=x,dc=a"), n("cn=X,DC=a"));
        assert_eq!(n("OID.2.5.4.11=Sales,o=Acme"), n("ou=sales,o=acme"));
        assert_eq!(n(r"cn=\20lead,dc=a"), n("cn=lead,dc=a"));
    }

    #[test]
    fn d3d_hex_escapes_decode_to_utf8() {
        assert_eq!(n(r"cn=Zo\C3\AB,dc=a"), n("cn=Zoë,dc=a"));
        assert_eq!(n(r"cn=ZO\C3\8B,dc=a"), n("cn=zoë,dc=a"));
        assert_eq!(
            n(r"cn=M\C3\BCller\2C J\C3\BCrgen,dc=a"),
            n(r"CN=Müller\, Jürgen,DC=a")
        );
    }

    #[test]
    fn d3d_special_characters_stay_unambiguous() {
        assert_ne!(n(r"cn=a\+b,dc=x"), n("cn=a+b=,dc=x"));
        assert_eq!(n(r"cn=a\+b,dc=x"), n(r"cn=a\2Bb,dc=x"));
        assert_eq!(n(r"cn=\#1,dc=x"), n(r"cn=\231,dc=x"));
        assert_eq!(n(r"cn=a\\b,dc=x"), n(r"cn=a\5cb,dc=x"));
        assert_eq!(n(r"cn=x\=y,dc=z"), n(r"cn=x=y,dc=z"));
    }

    #[test]
    fn d3d_multi_valued_rdns_are_sorted() {
        assert_eq!(n("cn=a+uid=b,dc=x"), n("UID=B + CN=A,dc=x"));
    }

    #[test]
    fn d3d_ber_values_and_non_dns() {
        assert_eq!(n("cn=#04024869,dc=x"), n("CN=#04024869,DC=X"));
        assert_eq!(n("  Not A DN  "), "not a dn");
        assert_eq!(n(""), "");
    }
}
