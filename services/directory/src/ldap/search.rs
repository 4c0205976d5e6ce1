//! Paged searches (RFC 2696) and ranged attribute retrieval, each page with
//! its own deadline and its result code checked: a read either sees every
//! page succeed or fails (D3.r).
//!
//! ldap3's `PagedResults` adapter is not used: it looks only at the cookie
//! of each page's result, so an intermediate page that failed but still
//! carried a cookie would be skipped silently, and it gives no place to put
//! a per-page deadline or hook. The loop here is the same protocol, with
//! every page's result code checked.
//!
//! Entries are decoded straight from ldap3's BER structures into the
//! attribute slots a search asked for (no per-entry hash maps, values
//! moved, not copied).

use std::time::Duration;

use ldap3::asn1::{parse_tag, StructureTag, PL};
use ldap3::controls::{PagedResults, RawControl};
use ldap3::{Ldap, LdapError, LdapResult, Scope};
use roster_domain::snapshot::ReadError;

use super::{PageEvent, PageHook, SearchKind};

const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// The attributes a search asks for, by slot.
#[derive(Debug, Clone)]
pub(crate) struct AttrSet {
    /// Attribute names (no options), in slot order.
    names: Vec<String>,
    /// What is sent: the names, with a `;range=` option where asked.
    request: Vec<String>,
}

/// A `;range=low-high` option (`high` `None` for `*`, the last values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub low: u32,
    pub high: Option<u32>,
}

impl AttrSet {
    pub(crate) fn new(names: Vec<String>) -> AttrSet {
        AttrSet {
            request: names.clone(),
            names,
        }
    }

    /// Asks for `attr` by ranges of `step` values from the start (an
    /// explicit range request, as Active Directory's forced ranges would
    /// look).
    pub(crate) fn with_range(mut self, attr: &str, step: u32) -> AttrSet {
        for (name, req) in self.names.iter().zip(self.request.iter_mut()) {
            if name.eq_ignore_ascii_case(attr) {
                *req = format!("{name};range=0-{}", step.max(1) - 1);
            }
        }
        self
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// What a search sends.
    pub(crate) fn request_names(&self) -> Vec<&str> {
        self.request.iter().map(String::as_str).collect()
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn slot_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.eq_ignore_ascii_case(name))
    }

    /// The slot of a returned attribute type (`member`, `Member`,
    /// `member;range=0-1499`), with its range option if any.
    /// `hint`: the slot most likely (servers send attributes in the same
    /// order for every entry, so the previous entry's slot at this
    /// position).
    fn slot(&self, returned: &[u8], hint: Option<usize>) -> Option<(usize, Option<Range>)> {
        // Bytes, not text: this runs for every attribute of every entry.
        let is = |n: &String| {
            let n = n.as_bytes();
            returned.len() >= n.len()
                && returned[..n.len()].eq_ignore_ascii_case(n)
                && (returned.len() == n.len() || returned[n.len()] == b';')
        };
        let slot = match hint {
            Some(h) if self.names.get(h).is_some_and(is) => h,
            _ => self.names.iter().position(is)?,
        };
        let mut range = None;
        let options = &returned[self.names[slot].len()..];
        if !options.is_empty() {
            for option in std::str::from_utf8(options).ok()?.split(';') {
                if option.len() > 6 && option[..6].eq_ignore_ascii_case("range=") {
                    range = parse_range(&option[6..]);
                }
            }
        }
        Some((slot, range))
    }
}

/// `0-1499` / `1500-*`.
pub(crate) fn parse_range(s: &str) -> Option<Range> {
    let (low, high) = s.split_once('-')?;
    let low = low.trim().parse().ok()?;
    let high = match high.trim() {
        "*" => None,
        h => Some(h.parse().ok()?),
    };
    Some(Range { low, high })
}

/// One entry as returned: its DN and its values, each tagged with its slot,
/// in the order the server sent them. A paged search reuses one `RawEntry`
/// for all its entries, so reading an entry allocates nothing beyond what
/// the BER decoder already did; values are moved out, not copied.
#[derive(Debug, Default)]
pub(crate) struct RawEntry {
    pub dn: String,
    values: Vec<(usize, Vec<u8>)>,
    /// Slots that came back as a range of their values.
    pub ranges: Vec<(usize, Range)>,
    /// The slot of each returned attribute of the previous entry, by
    /// position (a hint for the next one).
    order: Vec<Option<usize>>,
}

impl RawEntry {
    fn clear(&mut self) {
        self.dn.clear();
        self.values.clear();
        self.ranges.clear();
    }

    /// The values of `slot` (values already taken are empty).
    pub(crate) fn values(&self, slot: usize) -> impl Iterator<Item = &[u8]> {
        self.values
            .iter()
            .filter(move |(s, _)| *s == slot)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether `slot` has a value.
    pub(crate) fn has(&self, slot: usize) -> bool {
        self.values.iter().any(|(s, _)| *s == slot)
    }

    /// Moves the values of `slot` out (leaving them empty).
    pub(crate) fn take(&mut self, slot: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.values
            .iter_mut()
            .filter(move |(s, _)| *s == slot)
            .map(|(_, v)| std::mem::take(v))
    }

    /// The first value of `slot` that is not blank, to take or copy.
    pub(crate) fn first_nonblank(&mut self, slot: usize) -> Option<&mut Vec<u8>> {
        self.values
            .iter_mut()
            .find(|(s, v)| *s == slot && !v.trim_ascii().is_empty())
            .map(|(_, v)| v)
    }
}

/// Decodes a SearchResultEntry into `out` (cleared first); `None` when it
/// is malformed.
pub(crate) fn parse_entry_into(
    out: &mut RawEntry,
    tag: StructureTag,
    attrs: &AttrSet,
) -> Option<()> {
    out.clear();
    let mut parts = tag.expect_constructed()?.into_iter();
    out.dn = match String::from_utf8(parts.next()?.expect_primitive()?) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    for (position, partial) in parts.next()?.expect_constructed()?.into_iter().enumerate() {
        let mut it = partial.expect_constructed()?.into_iter();
        let name = it.next()?.expect_primitive()?;
        let found = attrs.slot(&name, out.order.get(position).copied().flatten());
        match out.order.get_mut(position) {
            Some(o) => *o = found.map(|(s, _)| s),
            None => out.order.push(found.map(|(s, _)| s)),
        }
        let Some((slot, range)) = found else {
            continue;
        };
        for v in it.next()?.expect_constructed()? {
            if let PL::P(bytes) = v.payload {
                out.values.push((slot, bytes));
            }
        }
        if let Some(r) = range {
            out.ranges.push((slot, r));
        }
    }
    Some(())
}

#[cfg(test)]
fn parse_entry(tag: StructureTag, attrs: &AttrSet) -> Option<RawEntry> {
    let mut e = RawEntry::default();
    parse_entry_into(&mut e, tag, attrs).map(|()| e)
}

/// What every search of one read shares.
pub(crate) struct Ctx<'a> {
    pub timeout: Duration,
    /// 0: no paging control.
    pub page_size: u32,
    pub hook: Option<&'a PageHook>,
    pub endpoint: &'a str,
}

/// One search of a read.
pub(crate) struct Search<'a> {
    pub kind: SearchKind,
    pub base: &'a str,
    pub filter: &'a str,
    pub attrs: &'a AttrSet,
    /// Controls sent with every page besides paging (B1: Show Deleted).
    pub controls: &'a [RawControl],
}

pub(crate) fn lost(
    e: LdapError,
    kind: SearchKind,
    page: u32,
    total: u64,
    t: Duration,
) -> ReadError {
    match e {
        LdapError::Timeout { .. } => ReadError::Timeout(format!(
            "page {page} of the {kind} search: no answer within {}s ({total} entries read)",
            t.as_secs()
        )),
        LdapError::FilterParsing => {
            ReadError::InvalidFilter(format!("the {kind} filter could not be encoded"))
        }
        other => ReadError::Incomplete(format!(
            "the connection was lost during page {page} of the {kind} search after {total} entries: {other}"
        )),
    }
}

/// The error of a search that ended with result code `rc` (not 0).
pub(crate) fn result_error(
    res: &LdapResult,
    kind: SearchKind,
    base: &str,
    page: u32,
    total: u64,
) -> ReadError {
    let text = res.text.trim();
    let at = format!("the {kind} search, page {page}, after {total} entries");
    match res.rc {
        4 => ReadError::Incomplete(format!(
            "{at}: the server's size limit was reached (result 4, sizeLimitExceeded); the directory must allow paged searches"
        )),
        11 => ReadError::Incomplete(format!(
            "{at}: administrative limit exceeded (result 11): {text}"
        )),
        3 => ReadError::Timeout(format!("{at}: the server's time limit was reached (result 3)")),
        10 => ReadError::BaseDnNotFound(format!(
            "{base} is not held by this server (referral{}): use a base DN in one of its naming contexts",
            res.refs.first().map(|r| format!(" to {r}")).unwrap_or_default()
        )),
        32 => ReadError::BaseDnNotFound(format!(
            "{base} (result 32, noSuchObject{})",
            if res.matched.is_empty() {
                String::new()
            } else {
                format!("; the closest existing entry is {}", res.matched)
            }
        )),
        34 => ReadError::BaseDnNotFound(format!("{base:?} is not a valid DN: {text}")),
        50 => ReadError::Permission(format!(
            "{at}: insufficient access rights (result 50): {text}"
        )),
        51 | 52 => ReadError::Incomplete(format!(
            "{at}: the server is busy or unavailable (result {}): {text}",
            res.rc
        )),
        1 if text.to_ascii_lowercase().contains("authenticat")
            || text.to_ascii_lowercase().contains("bind") =>
        {
            ReadError::Permission(format!(
                "{at}: the directory does not let this account read without an authenticated bind (result 1): {text}"
            ))
        }
        12 => ReadError::Incomplete(format!(
            "{at}: the server does not support a control the read needs (result 12): {text}"
        )),
        rc => ReadError::Incomplete(format!("{at}: result {rc}: {text}")),
    }
}

/// The cookie of a paged-results response control (empty: last page);
/// `None` when the response has no such control.
fn response_cookie(ctrls: &[ldap3::controls::Control]) -> Option<Result<Vec<u8>, ()>> {
    let raw: &RawControl = ctrls
        .iter()
        .map(|c| &c.1)
        .find(|raw| raw.ctype == PAGED_RESULTS_OID)?;
    let parse = || -> Option<Vec<u8>> {
        let val = raw.val.as_deref()?;
        let (_, tag) = parse_tag(val).ok()?;
        let mut parts = tag.expect_constructed()?.into_iter();
        let _size = parts.next()?;
        parts.next()?.expect_primitive()
    };
    Some(parse().ok_or(()))
}

/// Runs `search` under `base` (subtree), page by page, giving every entry
/// to `sink`. Returns the number of entries. Any failure of any page is an
/// error; search result references (referrals) are skipped.
pub(crate) async fn paged_search(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    search: &Search<'_>,
    mut sink: impl FnMut(&mut RawEntry) -> Result<(), ReadError>,
) -> Result<u64, ReadError> {
    let kind = search.kind;
    let mut entry = RawEntry::default();
    let mut cookie: Vec<u8> = Vec::new();
    let mut page: u32 = 0;
    let mut total: u64 = 0;
    let t = ctx.timeout;
    loop {
        page += 1;
        let mut controls = search.controls.to_vec();
        if ctx.page_size > 0 {
            controls.push(RawControl::from(PagedResults {
                size: ctx.page_size as i32,
                cookie: cookie.clone(),
            }));
        }
        if !controls.is_empty() {
            ldap.with_controls(controls);
        }
        // No per-message timer (ldap3's with_timeout arms one per entry):
        // the whole page has the deadline below.
        let before = total;
        let one_page = async {
            let mut stream = ldap
                .streaming_search(
                    search.base,
                    Scope::Subtree,
                    search.filter,
                    &search.attrs.request,
                )
                .await
                .map_err(|e| lost(e, kind, page, total, t))?;
            let mut n: u64 = 0;
            loop {
                let item = stream
                    .next()
                    .await
                    .map_err(|e| lost(e, kind, page, total + n, t))?;
                let Some(re) = item else { break };
                if re.is_ref() || re.is_intermediate() {
                    continue;
                }
                parse_entry_into(&mut entry, re.0, search.attrs).ok_or_else(|| {
                    ReadError::Incomplete(format!(
                        "page {page} of the {kind} search held a malformed entry"
                    ))
                })?;
                sink(&mut entry)?;
                n += 1;
            }
            Ok::<_, ReadError>((n, stream.finish().await))
        };
        let (n, res) = match tokio::time::timeout(t, one_page).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ReadError::Timeout(format!(
                    "page {page} of the {kind} search took longer than {}s ({before} entries read before it)",
                    t.as_secs()
                )))
            }
        };
        total += n;
        if res.rc != 0 {
            return Err(result_error(&res, kind, search.base, page, total));
        }
        tracing::debug!(endpoint = ctx.endpoint, search = %kind, page, entries = n, total, "page read");
        if let Some(hook) = ctx.hook {
            hook(&PageEvent {
                search: kind,
                page,
                entries: n,
            });
        }
        if ctx.page_size == 0 {
            return Ok(total);
        }
        match response_cookie(&res.ctrls) {
            // The server ignored the (non-critical) paging control and sent
            // everything with success.
            None => return Ok(total),
            Some(Err(())) => {
                return Err(ReadError::Incomplete(format!(
                    "page {page} of the {kind} search: unreadable paged-results control"
                )))
            }
            Some(Ok(c)) if c.is_empty() => return Ok(total),
            Some(Ok(c)) if n == 0 && c == cookie => {
                return Err(ReadError::Incomplete(format!(
                    "page {page} of the {kind} search: no entries and the same paging cookie again (the server is not advancing)"
                )))
            }
            Some(Ok(c)) => cookie = c,
        }
    }
}

/// Reads one entry (`dn`, base scope) for the given attributes: the entry
/// (if the server returned one) and the result, whose code the caller
/// interprets. Transport failures and timeouts are errors.
async fn read_one(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    dn: &str,
    attrs: &AttrSet,
    kind: SearchKind,
) -> Result<(Option<RawEntry>, LdapResult), ReadError> {
    read_one_with(ldap, ctx, dn, attrs, kind, Vec::new()).await
}

/// [`read_one`] with request controls.
pub(crate) async fn read_one_with(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    dn: &str,
    attrs: &AttrSet,
    kind: SearchKind,
    controls: Vec<RawControl>,
) -> Result<(Option<RawEntry>, LdapResult), ReadError> {
    let t = ctx.timeout;
    ldap.with_timeout(t);
    if !controls.is_empty() {
        ldap.with_controls(controls);
    }
    let fut = async {
        let mut stream = ldap
            .streaming_search(dn, Scope::Base, "(objectClass=*)", &attrs.request)
            .await
            .map_err(|e| lost(e, kind, 1, 0, t))?;
        let mut found = None;
        while let Some(re) = stream.next().await.map_err(|e| lost(e, kind, 1, 0, t))? {
            if re.is_ref() || re.is_intermediate() {
                continue;
            }
            let mut entry = RawEntry::default();
            parse_entry_into(&mut entry, re.0, attrs).ok_or_else(|| {
                ReadError::Incomplete(format!("{dn}: malformed entry in the {kind} read"))
            })?;
            found = Some(entry);
        }
        Ok::<_, ReadError>((found, stream.finish().await))
    };
    tokio::time::timeout(t, fut)
        .await
        .map_err(|_| ReadError::Timeout(format!("{dn}: no answer within {}s", t.as_secs())))?
}

/// The remaining values of a ranged attribute: the first response said
/// `attr;range=low-high`, so ask for `attr;range=high+1-*` (or the next
/// `step` values) until a response ends in `*` (Active Directory returns
/// large `member` values 1500 at a time).
pub(crate) async fn rest_of_range(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    dn: &str,
    attr: &str,
    first: Range,
    step: Option<u32>,
) -> Result<Vec<Vec<u8>>, ReadError> {
    let mut out = Vec::new();
    let Some(mut high) = first.high else {
        return Ok(out);
    };
    let mut requests: u32 = 0;
    loop {
        let low = high
            .checked_add(1)
            .ok_or_else(|| ReadError::Incomplete(format!("{dn}: {attr} range overflow")))?;
        let request = match step {
            Some(s) => format!("{attr};range={low}-{}", low.saturating_add(s.max(1) - 1)),
            None => format!("{attr};range={low}-*"),
        };
        let attrs = AttrSet {
            names: vec![attr.to_string()],
            request: vec![request],
        };
        let (entry, res) = read_one(ldap, ctx, dn, &attrs, SearchKind::MemberRanges).await?;
        let mut entry = match (entry, res.rc) {
            (Some(e), 0) => e,
            (None, 0) | (_, 32) => {
                return Err(ReadError::Incomplete(format!(
                    "{dn} disappeared while its {attr} values were read by ranges"
                )))
            }
            _ => return Err(result_error(&res, SearchKind::MemberRanges, dn, 1, 0)),
        };
        let range = entry.ranges.first().map(|(_, r)| *r);
        let got: Vec<Vec<u8>> = entry.take(0).collect();
        requests += 1;
        if let Some(hook) = ctx.hook {
            hook(&PageEvent {
                search: SearchKind::MemberRanges,
                page: requests,
                entries: got.len() as u64,
            });
        }
        out.extend(got);
        match range {
            // No range option: the server sent the rest (or nothing left).
            None => return Ok(out),
            Some(Range { high: None, .. }) => return Ok(out),
            Some(Range {
                low: got_low,
                high: Some(h),
            }) => {
                if got_low != low || h < low {
                    return Err(ReadError::Incomplete(format!(
                        "{dn}: the server answered {attr};range={got_low}-{h} to a request from {low}"
                    )));
                }
                high = h;
            }
        }
    }
}

/// Reads the base DN itself (base scope), to tell "not found" (result 32,
/// or a referral elsewhere) and "not visible" from a base that is fine.
pub(crate) async fn check_base(
    ldap: &mut Ldap,
    ctx: &Ctx<'_>,
    base: &str,
) -> Result<(), ReadError> {
    let attrs = AttrSet::new(vec!["1.1".to_string()]);
    let (entry, res) = read_one(ldap, ctx, base, &attrs, SearchKind::BaseDn).await?;
    match (entry, res.rc) {
        (Some(_), 0) => Ok(()),
        (None, 0) => Err(ReadError::BaseDnNotFound(format!(
            "{base} is not visible to the bind user"
        ))),
        _ => Err(result_error(&res, SearchKind::BaseDn, base, 1, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::TagClass;

    fn prim(bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn cons(id: u64, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::C(inner),
        }
    }

    fn entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> StructureTag {
        let list = attrs
            .iter()
            .map(|(name, vals)| {
                cons(
                    16,
                    vec![
                        prim(name.as_bytes()),
                        cons(17, vals.iter().map(|v| prim(v)).collect()),
                    ],
                )
            })
            .collect();
        StructureTag {
            class: TagClass::Application,
            id: 4,
            payload: PL::C(vec![prim(dn.as_bytes()), cons(16, list)]),
        }
    }

    #[test]
    fn d5_ranges_parse() {
        assert_eq!(
            parse_range("0-1499"),
            Some(Range {
                low: 0,
                high: Some(1499)
            })
        );
        assert_eq!(
            parse_range("1500-*"),
            Some(Range {
                low: 1500,
                high: None
            })
        );
        assert_eq!(parse_range("x-1"), None);
        assert_eq!(parse_range("1"), None);
    }

    #[test]
    fn d5_entries_decode_into_slots_case_insensitively_with_ranges() {
        let attrs = AttrSet::new(vec!["objectGUID".into(), "mail".into(), "member".into()]);
        let tag = entry(
            "CN=G,DC=x",
            &[
                ("objectguid", &[&[1u8, 2, 3][..]]),
                ("Mail", &[b"g@x.org"]),
                ("member;range=0-1", &[b"CN=a,DC=x", b"CN=b,DC=x"]),
                ("unasked", &[b"ignored"]),
            ],
        );
        let e = parse_entry(tag, &attrs).unwrap();
        assert_eq!(e.dn, "CN=G,DC=x");
        assert_eq!(e.values(0).collect::<Vec<_>>(), vec![&[1u8, 2, 3][..]]);
        assert_eq!(e.values(1).collect::<Vec<_>>(), vec![&b"g@x.org"[..]]);
        assert_eq!(e.values(2).count(), 2);
        assert_eq!(
            e.ranges,
            vec![(
                2,
                Range {
                    low: 0,
                    high: Some(1)
                }
            )]
        );
    }

    #[test]
    fn d5_explicit_range_requests() {
        let a = AttrSet::new(vec!["mail".into(), "member".into()]).with_range("MEMBER", 3);
        assert_eq!(a.request, vec!["mail", "member;range=0-2"]);
        assert_eq!(a.names(), &["mail", "member"]);
    }

    #[test]
    fn d3r_malformed_entries_are_refused() {
        let bad = StructureTag {
            class: TagClass::Application,
            id: 4,
            payload: PL::P(vec![1, 2]),
        };
        assert!(parse_entry(bad, &AttrSet::new(vec![])).is_none());
    }

    #[test]
    fn d3r_page_result_codes_map_to_incomplete_or_specific_errors() {
        let res = |rc: u32| LdapResult {
            rc,
            matched: "dc=example,dc=com".into(),
            text: "text".into(),
            refs: vec![],
            ctrls: vec![],
        };
        let k = SearchKind::Users;
        assert!(
            matches!(result_error(&res(4), k, "b", 1, 1000), ReadError::Incomplete(ref m) if m.contains("size limit"))
        );
        assert!(matches!(
            result_error(&res(11), k, "b", 2, 1000),
            ReadError::Incomplete(_)
        ));
        assert!(matches!(
            result_error(&res(3), k, "b", 2, 1000),
            ReadError::Timeout(_)
        ));
        assert!(
            matches!(result_error(&res(32), k, "b", 1, 0), ReadError::BaseDnNotFound(ref m) if m.contains("closest existing entry is dc=example"))
        );
        assert!(matches!(
            result_error(&res(50), k, "b", 1, 0),
            ReadError::Permission(_)
        ));
        assert!(matches!(
            result_error(&res(80), k, "b", 1, 0),
            ReadError::Incomplete(_)
        ));
    }

    #[test]
    fn d5_paged_cookie_parses_without_panicking() {
        use ldap3::controls::Control;
        let raw: RawControl = PagedResults {
            size: 0,
            cookie: b"abc".to_vec(),
        }
        .into();
        assert_eq!(
            response_cookie(&[Control(None, raw)]),
            Some(Ok(b"abc".to_vec()))
        );
        let broken = RawControl {
            ctype: PAGED_RESULTS_OID.into(),
            crit: false,
            val: Some(vec![0xff]),
        };
        assert_eq!(response_cookie(&[Control(None, broken)]), Some(Err(())));
        assert_eq!(response_cookie(&[]), None);
    }
}
