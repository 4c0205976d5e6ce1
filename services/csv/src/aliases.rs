//! Splitting an aliases cell into addresses (M2, and D3.c's proxyAddresses
//! conventions for files exported from Active Directory).

/// One address written in an aliases cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasToken<'a> {
    /// The address without its `smtp:` prefix, not yet validated.
    pub value: &'a str,
    /// Written as `SMTP:` in upper case: in proxyAddresses this marks the
    /// primary address.
    pub primary_marker: bool,
}

/// Splits an aliases cell. Entries are separated by `;`, `,`, whitespace or
/// line breaks. proxyAddresses entries are understood: `smtp:` and `SMTP:`
/// prefixes are stripped, entries of other address types (`X500:`, `X400:`,
/// `SIP:`, `EUM:`...) are skipped, together with the pieces that follow them
/// up to the next entry that has a type or an `@` (X.400 and X.500 values
/// contain spaces and semicolons themselves).
pub fn split_aliases(cell: &str) -> impl Iterator<Item = AliasToken<'_>> {
    let mut in_foreign_entry = false;
    cell.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|piece| !piece.is_empty())
        .filter_map(move |piece| {
            match address_type(piece) {
                Some((kind, value)) => {
                    if kind.eq_ignore_ascii_case("smtp") {
                        in_foreign_entry = false;
                        // "smtp:" alone, with the address after a space, is
                        // handled by the next piece.
                        (!value.is_empty()).then_some(AliasToken {
                            value,
                            primary_marker: kind == "SMTP",
                        })
                    } else {
                        in_foreign_entry = true;
                        None
                    }
                }
                None if in_foreign_entry && !piece.contains('@') => None,
                None => {
                    in_foreign_entry = false;
                    Some(AliasToken {
                        value: piece,
                        primary_marker: false,
                    })
                }
            }
        })
}

/// `("smtp", "a@b")` for `smtp:a@b`: a type is letters and digits before a
/// colon that comes before any `@` (an address's local part has no colon).
fn address_type(piece: &str) -> Option<(&str, &str)> {
    let (kind, value) = piece.split_once(':')?;
    let is_type =
        !kind.is_empty() && kind.len() <= 16 && kind.bytes().all(|b| b.is_ascii_alphanumeric());
    is_type.then_some((kind, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(cell: &str) -> Vec<&str> {
        split_aliases(cell).map(|t| t.value).collect()
    }

    #[test]
    fn m2_aliases_split_on_semicolons_commas_whitespace_and_newlines() {
        assert_eq!(
            values(" a@x.com; b@x.com,c@x.com d@x.com\r\ne@x.com\n\tf@x.com ;; "),
            ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com", "f@x.com"]
        );
        assert!(values("").is_empty());
        assert!(values(" ; , ").is_empty());
    }

    #[test]
    fn m2_proxy_addresses_keep_smtp_and_skip_other_types() {
        let cell = "SMTP:john@x.com;smtp:j.doe@x.com;X500:/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=john;SIP:john@x.com;X400:C=US;A= ;P=Org;O=Exchange;S=Doe;G=John;;smtp:jd@y.com";
        let tokens: Vec<_> = split_aliases(cell).collect();
        assert_eq!(
            tokens,
            [
                AliasToken {
                    value: "john@x.com",
                    primary_marker: true
                },
                AliasToken {
                    value: "j.doe@x.com",
                    primary_marker: false
                },
                AliasToken {
                    value: "jd@y.com",
                    primary_marker: false
                },
            ]
        );
    }

    #[test]
    fn m2_smtp_prefix_followed_by_a_space_still_yields_the_address() {
        assert_eq!(values("smtp: a@x.com"), ["a@x.com"]);
    }

    #[test]
    fn m2_words_without_type_are_kept_so_they_can_be_reported() {
        assert_eq!(values("a@x.com john"), ["a@x.com", "john"]);
    }
}
