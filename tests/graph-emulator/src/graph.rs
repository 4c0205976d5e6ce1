//! Microsoft Graph v1.0: `/users`, `/groups`, `/groups/{id}/members`,
//! `/groups/{id}/transitiveMembers`, `/users/delta`, `/groups/delta`, and
//! single-object reads.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::GraphError;
use crate::filter::{self, Filter, Mode};
use crate::json::{push_str, Obj};
use crate::model::{find_prop, Entity, Group, Kind, Permission, User, Val};
use crate::reply::{Ctx, Reply};
use crate::state::{lock, read, GoneKind, Shared, TenantState, TokenInfo};
use crate::store::{MemberKind, Members, Rec};

// ---------------------------------------------------------------------------
// Query options
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Query {
    select: Option<String>,
    filter: Option<String>,
    top: Option<String>,
    count: Option<String>,
    skiptoken: Option<String>,
    deltatoken: Option<String>,
    search: Option<String>,
    orderby: Option<String>,
    expand: Option<String>,
    skip: Option<String>,
    /// All decoded pairs, in order (nextLinks repeat them).
    pairs: Vec<(String, String)>,
}

fn parse_query(pairs: &[(String, String)]) -> Result<Query, GraphError> {
    let mut q = Query {
        pairs: pairs.to_vec(),
        ..Query::default()
    };
    for (k, v) in pairs {
        if !k.starts_with('$') {
            continue;
        }
        let slot = match k.to_ascii_lowercase().as_str() {
            "$select" => &mut q.select,
            "$filter" => &mut q.filter,
            "$top" => &mut q.top,
            "$count" => &mut q.count,
            "$skiptoken" => &mut q.skiptoken,
            "$deltatoken" => &mut q.deltatoken,
            "$search" => &mut q.search,
            "$orderby" => &mut q.orderby,
            "$expand" => &mut q.expand,
            "$skip" => &mut q.skip,
            "$format" => continue,
            _ => {
                return Err(GraphError::bad_request(format!(
                    "The query parameter '{k}' is not supported."
                )))
            }
        };
        if slot.is_some() {
            return Err(GraphError::bad_request(format!(
                "Query option '{k}' was specified more than once, but it must be specified at most once."
            )));
        }
        *slot = Some(v.clone());
    }
    Ok(q)
}

impl Query {
    fn count_true(&self) -> Result<bool, GraphError> {
        match self.count.as_deref() {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(GraphError::bad_request(format!(
                "Invalid value '{v}' for $count query option found. The $count query option requires a Boolean value."
            ))),
        }
    }

    /// `$top`, 1 to 999, default 100.
    fn page_size(&self) -> Result<usize, GraphError> {
        match self.top.as_deref() {
            None => Ok(100),
            Some(v) => {
                let n: i64 = v.trim().parse().map_err(|_| {
                    GraphError::bad_request(format!(
                        "Invalid value '{v}' for $top query option found. The $top query option requires a non-negative integer value."
                    ))
                })?;
                if !(1..=999).contains(&n) {
                    return Err(GraphError::unsupported_query(format!(
                        "Invalid page size specified: '{n}'. Must be between 1 and 999 inclusive."
                    )));
                }
                Ok(n as usize)
            }
        }
    }

    fn select_names(&self) -> Option<Vec<String>> {
        self.select.as_ref().map(|s| {
            s.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
    }
}

/// Request facts the handlers need.
struct Req<'a> {
    shared: &'a Shared,
    ctx: &'a Ctx,
    /// Path relative to the graph base, e.g. `/users/delta`.
    rel_path: &'a str,
    q: Query,
    eventual: bool,
    minimal: bool,
}

impl Req<'_> {
    fn advanced(&self) -> Result<bool, GraphError> {
        Ok(self.eventual && self.q.count_true()?)
    }

    fn next_link(&self, skiptoken: &str) -> String {
        let mut url = format!("{}{}?", self.shared.graph_base(), self.rel_path);
        for (k, v) in &self.q.pairs {
            if k.eq_ignore_ascii_case("$skiptoken") {
                continue;
            }
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
            url.push('&');
        }
        url.push_str("$skiptoken=");
        url.push_str(skiptoken);
        url
    }
}

/// Percent-encodes a query component, keeping OData's readable characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$,'():@/*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Authentication and authorisation
// ---------------------------------------------------------------------------

const USERS_READ: [Permission; 4] = [
    Permission::UserReadAll,
    Permission::UserReadWriteAll,
    Permission::DirectoryReadAll,
    Permission::DirectoryReadWriteAll,
];

/// List groups and list members: `GroupMember.Read.All` is the least
/// privileged application permission.
const GROUPS_READ: [Permission; 5] = [
    Permission::GroupMemberReadAll,
    Permission::GroupReadAll,
    Permission::GroupReadWriteAll,
    Permission::DirectoryReadAll,
    Permission::DirectoryReadWriteAll,
];

fn has_any(roles: &BTreeSet<Permission>, any_of: &[Permission]) -> bool {
    any_of.iter().any(|p| roles.contains(p))
}

fn require(roles: &BTreeSet<Permission>, any_of: &[Permission]) -> Result<(), GraphError> {
    if has_any(roles, any_of) {
        Ok(())
    } else {
        Err(GraphError::forbidden())
    }
}

fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(TokenInfo, Arc<TenantState>), GraphError> {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let token = match value.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ => "",
    };
    if token.is_empty() {
        return Err(GraphError::unauthenticated("Access token is empty."));
    }
    let info = lock(&shared.tokens).get(token).cloned();
    let info = match info {
        Some(i) => i,
        None if token.matches('.').count() != 2 => {
            return Err(GraphError::unauthenticated(
                "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format.",
            ))
        }
        None => {
            return Err(GraphError::unauthenticated(
                "Access token validation failure. Invalid audience.",
            ))
        }
    };
    if info.expires <= now {
        return Err(GraphError::unauthenticated(
            "Access token has expired or is not yet valid.",
        ));
    }
    let tenant = shared.tenant(&info.tenant_id).ok_or_else(|| {
        GraphError::unauthenticated("Access token validation failure. Invalid audience.")
    })?;
    Ok((info, tenant))
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

fn is_delta(seg: &str) -> bool {
    let s = seg.to_ascii_lowercase();
    matches!(
        s.as_str(),
        "delta" | "delta()" | "microsoft.graph.delta" | "microsoft.graph.delta()"
    )
}

fn not_found_segment(seg: &str) -> GraphError {
    GraphError::bad_request(format!("Resource not found for the segment '{seg}'."))
}

/// Handles a request under `/v1.0`.
pub(crate) fn handle(
    shared: &Shared,
    method: &Method,
    rel_path: &str,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    ctx: &Ctx,
) -> Reply {
    match route(shared, method, rel_path, pairs, headers, ctx) {
        Ok(r) => r,
        Err(e) => Reply::graph_error(&e, ctx),
    }
}

fn route(
    shared: &Shared,
    method: &Method,
    rel_path: &str,
    pairs: &[(String, String)],
    headers: &HeaderMap,
    ctx: &Ctx,
) -> Result<Reply, GraphError> {
    let segs: Vec<String> = rel_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let Some(first) = segs.first() else {
        return Err(GraphError::bad_request(
            "Invalid request: the service root is not emulated.",
        ));
    };
    let set = first.to_ascii_lowercase();
    if set != "users" && set != "groups" {
        return Err(not_found_segment(first));
    }
    if method != Method::GET {
        return Err(GraphError::new(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ));
    }
    let (token, tenant) = authenticate(shared, headers, ctx.now)?;
    let header = |name: &str| -> Option<String> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let eventual =
        header("consistencylevel").is_some_and(|v| v.trim().eq_ignore_ascii_case("eventual"));
    let minimal = header("prefer").is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
    });
    let req = Req {
        shared,
        ctx,
        rel_path,
        q: parse_query(pairs)?,
        eventual,
        minimal,
    };
    let roles = &token.roles;
    let seg = |i: usize| segs.get(i).map(String::as_str);
    match (set.as_str(), seg(1), seg(2), seg(3), seg(4)) {
        ("users", None, ..) => {
            require(roles, &USERS_READ)?;
            let dir = read(&tenant.dir);
            list::<User>(&req, &dir.users)
        }
        ("users", Some("$count"), None, ..) => {
            require(roles, &USERS_READ)?;
            let dir = read(&tenant.dir);
            count::<User>(&req, &dir.users)
        }
        ("users", Some(d), None, ..) if is_delta(d) => {
            require(roles, &USERS_READ)?;
            let dir = read(&tenant.dir);
            delta::<User>(&req, &tenant, &dir.users, None, dir.seq)
        }
        ("users", Some(id), None, ..) => {
            require(roles, &USERS_READ)?;
            let dir = read(&tenant.dir);
            let rec = dir
                .users
                .get(id)
                .filter(|r| r.live())
                .or_else(|| {
                    dir.users
                        .values()
                        .find(|r| r.live() && r.obj.user_principal_name.eq_ignore_ascii_case(id))
                })
                .ok_or_else(|| GraphError::not_found(id))?;
            get_one(&req, &rec.obj)
        }
        ("groups", None, ..) => {
            require(roles, &GROUPS_READ)?;
            let dir = read(&tenant.dir);
            list::<Group>(&req, &dir.groups)
        }
        ("groups", Some("$count"), None, ..) => {
            require(roles, &GROUPS_READ)?;
            let dir = read(&tenant.dir);
            count::<Group>(&req, &dir.groups)
        }
        ("groups", Some(d), None, ..) if is_delta(d) => {
            require(roles, &GROUPS_READ)?;
            let dir = read(&tenant.dir);
            delta::<Group>(&req, &tenant, &dir.groups, Some(&dir.members), dir.seq)
        }
        ("groups", Some(id), None, ..) => {
            require(roles, &GROUPS_READ)?;
            let dir = read(&tenant.dir);
            let rec = dir
                .groups
                .get(id)
                .filter(|r| r.live())
                .ok_or_else(|| GraphError::not_found(id))?;
            get_one(&req, &rec.obj)
        }
        ("groups", Some(id), Some(rel), rest, tail) => {
            let transitive = match rel.to_ascii_lowercase().as_str() {
                "members" => false,
                "transitivemembers" => true,
                _ => return Err(not_found_segment(rel)),
            };
            let (cast, count_seg) = match (rest, tail) {
                (None, None) => (None, false),
                (Some("$count"), None) => (None, true),
                (Some(c), t) => {
                    let kind = match c.to_ascii_lowercase().as_str() {
                        "microsoft.graph.user" => MemberKind::User,
                        "microsoft.graph.group" => MemberKind::Group,
                        _ => return Err(not_found_segment(c)),
                    };
                    match t {
                        None => (Some(kind), false),
                        Some("$count") => (Some(kind), true),
                        Some(other) => return Err(not_found_segment(other)),
                    }
                }
                (None, Some(t)) => return Err(not_found_segment(t)),
            };
            if segs.len() > 5 {
                return Err(not_found_segment(&segs[5]));
            }
            require(roles, &GROUPS_READ)?;
            let dir = read(&tenant.dir);
            if !dir.groups.get(id).is_some_and(|r| r.live()) {
                return Err(GraphError::not_found(id));
            }
            let list = member_list(&dir.members, &dir.groups, id, transitive);
            let view = MemberView {
                users: &dir.users,
                groups: &dir.groups,
                can_read_users: has_any(roles, &USERS_READ),
            };
            members(&req, &view, list, cast, count_seg)
        }
        (_, Some(_), Some(s), ..) => Err(not_found_segment(s)),
        _ => Err(not_found_segment(first)),
    }
}

// ---------------------------------------------------------------------------
// $select
// ---------------------------------------------------------------------------

/// Resolves `$select` for `T`: indices of the properties to return and
/// their canonical names (for `@odata.context`).
fn resolve_select<T: Entity>(
    names: Option<&[String]>,
    single: bool,
) -> Result<Option<Vec<usize>>, GraphError> {
    let Some(names) = names else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        if n == "*" {
            out.extend(0..T::props().len());
            continue;
        }
        match find_prop::<T>(n) {
            Some((i, _)) => {
                if !out.contains(&i) {
                    out.push(i)
                }
            }
            None if T::single_only().iter().any(|s| s.eq_ignore_ascii_case(n)) => {
                if !single {
                    return Err(GraphError::new(
                        501,
                        "NotImplemented",
                        "This operation target is not yet supported.",
                    ));
                }
            }
            None => {
                return Err(GraphError::bad_request(format!(
                    "Parsing OData Select and Expand failed: Could not find a property named '{n}' on type '{}'.",
                    T::ODATA_TYPE
                )))
            }
        }
    }
    Ok(Some(out))
}

fn default_props<T: Entity>() -> Vec<usize> {
    T::props()
        .iter()
        .enumerate()
        .filter(|(_, d)| d.default)
        .map(|(i, _)| i)
        .collect()
}

fn context<T: Entity>(shared: &Shared, selected: Option<&[usize]>, suffix: &str) -> String {
    let mut s = format!("{}/$metadata#{}", shared.graph_base(), T::SET);
    if let Some(sel) = selected {
        s.push('(');
        let names: Vec<&str> = sel.iter().map(|&i| T::props()[i].name).collect();
        s.push_str(&names.join(","));
        s.push(')');
    }
    s.push_str(suffix);
    s
}

// ---------------------------------------------------------------------------
// $search
// ---------------------------------------------------------------------------

/// `$search="prop:term" AND "prop:term" OR ...`: `AND` binds tighter than
/// `OR`; a clause matches when a word of the property starts with the term.
struct Search {
    any_of: Vec<Vec<(usize, String)>>,
}

fn parse_search<T: Entity>(src: &str) -> Result<Search, GraphError> {
    let bad = || {
        GraphError::bad_request(format!(
            "Syntax error: character '{src}' is not valid at position 0 in '$search'."
        ))
    };
    let mut any_of = vec![Vec::new()];
    let mut rest = src.trim();
    let mut expect_clause = true;
    while !rest.is_empty() {
        if expect_clause {
            let body = rest.strip_prefix('"').ok_or_else(bad)?;
            let end = body.find('"').ok_or_else(bad)?;
            let clause = &body[..end];
            let (prop, term) = clause.split_once(':').ok_or_else(bad)?;
            let (i, d) = find_prop::<T>(prop.trim()).ok_or_else(|| {
                GraphError::bad_request(format!(
                    "Could not find a property named '{}' on type '{}'.",
                    prop.trim(),
                    T::ODATA_TYPE
                ))
            })?;
            if d.kind != Kind::Str {
                return Err(GraphError::unsupported_query(format!(
                    "Search is not supported on property '{}'.",
                    d.name
                )));
            }
            any_of
                .last_mut()
                .expect("at least one conjunction")
                .push((i, term.trim().to_lowercase()));
            rest = body[end + 1..].trim_start();
        } else {
            let (word, tail) = rest.split_once(char::is_whitespace).ok_or_else(bad)?;
            match word {
                "AND" => {}
                "OR" => any_of.push(Vec::new()),
                _ => return Err(bad()),
            }
            rest = tail.trim_start();
        }
        expect_clause = !expect_clause;
    }
    if expect_clause {
        return Err(bad());
    }
    Ok(Search { any_of })
}

impl Search {
    fn matches<T: Entity>(&self, obj: &T) -> bool {
        self.any_of.iter().any(|all| {
            all.iter().all(|(i, term)| match (T::props()[*i].get)(obj) {
                Val::Str(v) => {
                    let v = v.to_lowercase();
                    v.starts_with(term.as_str())
                        || v.split(|c: char| !c.is_alphanumeric())
                            .any(|w| w.starts_with(term.as_str()))
                }
                _ => false,
            })
        })
    }
}

// ---------------------------------------------------------------------------
// Collections
// ---------------------------------------------------------------------------

/// What a list request selects.
struct Criteria {
    filter: Option<Filter>,
    search: Option<Search>,
}

impl Criteria {
    fn matches<T: Entity>(&self, obj: &T) -> bool {
        self.filter.as_ref().is_none_or(|f| filter::eval(f, obj))
            && self.search.as_ref().is_none_or(|s| s.matches(obj))
    }
}

fn criteria<T: Entity>(req: &Req<'_>, advanced: bool) -> Result<Criteria, GraphError> {
    let filter = match &req.q.filter {
        Some(f) => Some(filter::compile::<T>(f, Mode { advanced })?),
        None => None,
    };
    let search = match &req.q.search {
        Some(s) => {
            if !req.eventual {
                return Err(GraphError::unsupported_query(
                    "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
                ));
            }
            Some(parse_search::<T>(s)?)
        }
        None => None,
    };
    Ok(Criteria { filter, search })
}

fn encode_skiptoken(kind: char, value: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("RFNwdA{kind}:{value}"))
}

fn decode_skiptoken(token: &str, kind: char) -> Result<String, GraphError> {
    let expired = || {
        GraphError::new(
            400,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your request.",
        )
    };
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| expired())?;
    let raw = String::from_utf8(raw).map_err(|_| expired())?;
    raw.strip_prefix("RFNwdA")
        .and_then(|r| r.strip_prefix(kind))
        .and_then(|r| r.strip_prefix(':'))
        .map(str::to_string)
        .ok_or_else(expired)
}

/// Ordering requested by `$orderby`.
struct Order {
    prop: usize,
    desc: bool,
}

fn parse_orderby<T: Entity>(req: &Req<'_>, advanced: bool) -> Result<Option<Order>, GraphError> {
    let Some(src) = &req.q.orderby else {
        return Ok(None);
    };
    let unsupported = || GraphError::unsupported_query("Sorting not supported for current query.");
    if req.q.filter.is_some() && !advanced {
        // "Using $filter and $orderby together is supported only with
        // advanced queries."
        return Err(unsupported());
    }
    let mut words = src.split_whitespace();
    let name = words.next().ok_or_else(unsupported)?;
    let desc = match words.next().map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(unsupported()),
    };
    let (i, d) = find_prop::<T>(name).ok_or_else(unsupported)?;
    // Sortable by default: displayName (users and groups),
    // userPrincipalName (users).
    if !(d.name == "displayName" || (T::SET == "users" && d.name == "userPrincipalName")) {
        return Err(unsupported());
    }
    Ok(Some(Order { prop: i, desc }))
}

fn sort_key<T: Entity>(obj: &T, prop: usize) -> String {
    match (T::props()[prop].get)(obj) {
        Val::Str(s) => s.to_lowercase(),
        _ => String::new(),
    }
}

fn list<T: Entity>(req: &Req<'_>, map: &BTreeMap<String, Rec<T>>) -> Result<Reply, GraphError> {
    if req.q.skip.is_some() {
        return Err(GraphError::request_bad_request(
            "'$skip' is not supported by the service.",
        ));
    }
    if req.q.expand.is_some() {
        return Err(GraphError::unsupported_query(
            "$expand is not emulated by the Graph emulator.",
        ));
    }
    let page = req.q.page_size()?;
    let advanced = req.advanced()?;
    let select_names = req.q.select_names();
    let selected = resolve_select::<T>(select_names.as_deref(), false)?;
    let props = selected.clone().unwrap_or_else(default_props::<T>);
    let crit = criteria::<T>(req, advanced)?;
    let order = parse_orderby::<T>(req, advanced)?;
    let first_page = req.q.skiptoken.is_none();

    let mut items: Vec<&T> = Vec::with_capacity(page.min(map.len()));
    let mut next: Option<String> = None;
    let mut total: Option<usize> = None;
    match order {
        Some(o) => {
            let offset: usize = match &req.q.skiptoken {
                Some(t) => decode_skiptoken(t, 'o')?.parse().map_err(|_| {
                    GraphError::new(400, "Directory_ExpiredPageToken", "The specified page token value has expired and can no longer be included in your request.")
                })?,
                None => 0,
            };
            let mut all: Vec<(String, &T)> = map
                .values()
                .filter(|r| r.live() && crit.matches(&r.obj))
                .map(|r| (sort_key(&r.obj, o.prop), &r.obj))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id().cmp(b.1.id())));
            if o.desc {
                all.reverse();
            }
            total = Some(all.len());
            items.extend(all.iter().skip(offset).take(page).map(|(_, o)| *o));
            if offset + page < all.len() {
                next = Some(encode_skiptoken('o', &(offset + page).to_string()));
            }
        }
        None => {
            let start = match &req.q.skiptoken {
                Some(t) => Bound::Excluded(decode_skiptoken(t, 'k')?),
                None => Bound::Unbounded,
            };
            for rec in map
                .range::<String, _>((start, Bound::Unbounded))
                .map(|(_, r)| r)
            {
                if !rec.live() || !crit.matches(&rec.obj) {
                    continue;
                }
                if items.len() == page {
                    let last = items.last().expect("page is not empty").id();
                    next = Some(encode_skiptoken('k', last));
                    break;
                }
                items.push(&rec.obj);
            }
        }
    }

    let count = if advanced && first_page {
        Some(total.unwrap_or_else(|| {
            map.values()
                .filter(|r| r.live() && crit.matches(&r.obj))
                .count()
        }))
    } else {
        None
    };

    let mut out = String::with_capacity(256 + items.len() * 64 * props.len().max(1));
    let mut top = Obj::open(&mut out);
    top.str(
        "@odata.context",
        &context::<T>(req.shared, selected.as_deref(), ""),
    );
    if let Some(c) = count {
        top.raw("@odata.count", &c.to_string());
    }
    if let Some(t) = &next {
        top.str("@odata.nextLink", &req.next_link(t));
    }
    let buf = top.key("value");
    buf.push('[');
    for (n, obj) in items.iter().enumerate() {
        if n > 0 {
            buf.push(',');
        }
        let mut o = Obj::open(buf);
        o.props(*obj, &props);
        o.close();
    }
    buf.push(']');
    top.close();
    Ok(Reply::json(200, out))
}

/// `GET /users/$count`, `GET /groups/$count`.
fn count<T: Entity>(req: &Req<'_>, map: &BTreeMap<String, Rec<T>>) -> Result<Reply, GraphError> {
    if !req.eventual {
        return Err(GraphError::request_bad_request(
            "$count is not currently supported.",
        ));
    }
    // With a $count segment, the header alone makes the query advanced.
    let crit = criteria::<T>(req, true)?;
    let n = map
        .values()
        .filter(|r| r.live() && crit.matches(&r.obj))
        .count();
    Ok(Reply::text(200, n.to_string()))
}

fn get_one<T: Entity>(req: &Req<'_>, obj: &T) -> Result<Reply, GraphError> {
    let select_names = req.q.select_names();
    let selected = resolve_select::<T>(select_names.as_deref(), true)?;
    let props = selected.clone().unwrap_or_else(default_props::<T>);
    let mut out = String::new();
    let mut o = Obj::open(&mut out);
    o.str(
        "@odata.context",
        &context::<T>(req.shared, selected.as_deref(), "/$entity"),
    );
    o.props(obj, &props);
    o.close();
    Ok(Reply::json(200, out))
}

// ---------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------

/// Members of `group` in id order: direct, or transitive (nested groups'
/// members too, each object once; nested groups themselves included).
fn member_list(
    members: &BTreeMap<String, Members>,
    groups: &BTreeMap<String, Rec<Group>>,
    group: &str,
    transitive: bool,
) -> Vec<(String, MemberKind)> {
    let direct = |g: &str| -> Vec<(String, MemberKind)> {
        members
            .get(g)
            .map(|m| {
                m.current
                    .iter()
                    .map(|(id, (k, _))| (id.clone(), *k))
                    .collect()
            })
            .unwrap_or_default()
    };
    if !transitive {
        return direct(group);
    }
    let mut seen: BTreeMap<String, MemberKind> = BTreeMap::new();
    let mut todo = vec![group.to_string()];
    let mut visited = BTreeSet::new();
    while let Some(g) = todo.pop() {
        if !visited.insert(g.clone()) {
            continue;
        }
        for (id, kind) in direct(&g) {
            if kind == MemberKind::Group && groups.get(&id).is_some_and(|r| r.live()) {
                todo.push(id.clone());
            }
            if id != group {
                seen.insert(id, kind);
            }
        }
    }
    seen.into_iter().collect()
}

struct MemberView<'a> {
    users: &'a BTreeMap<String, Rec<User>>,
    groups: &'a BTreeMap<String, Rec<Group>>,
    can_read_users: bool,
}

/// `$select` on a directoryObject collection: names must exist on user or
/// group.
/// Selected property indices for user members and for group members.
type MemberSelection = (Vec<usize>, Vec<usize>);

fn member_select(names: Option<&[String]>) -> Result<Option<MemberSelection>, GraphError> {
    let Some(names) = names else {
        return Ok(None);
    };
    let (mut u, mut g) = (Vec::new(), Vec::new());
    for n in names {
        let ui = find_prop::<User>(n).map(|(i, _)| i);
        let gi = find_prop::<Group>(n).map(|(i, _)| i);
        if ui.is_none() && gi.is_none() {
            return Err(GraphError::bad_request(format!(
                "Parsing OData Select and Expand failed: Could not find a property named '{n}' on type 'microsoft.graph.directoryObject'."
            )));
        }
        u.extend(ui);
        g.extend(gi);
    }
    Ok(Some((u, g)))
}

fn members(
    req: &Req<'_>,
    view: &MemberView<'_>,
    list: Vec<(String, MemberKind)>,
    cast: Option<MemberKind>,
    count_seg: bool,
) -> Result<Reply, GraphError> {
    let advanced = req.advanced()?;
    // "This header and $count are required when using the $search,
    // $filter, $orderby, or OData cast query parameters." (List members)
    let needs_advanced =
        req.q.filter.is_some() || req.q.orderby.is_some() || (cast.is_some() && !count_seg);
    if count_seg {
        if !req.eventual {
            return Err(GraphError::request_bad_request(
                "$count is not currently supported.",
            ));
        }
    } else if needs_advanced && !advanced {
        return Err(GraphError::unsupported_query(
            "Request with $filter, $orderby or a type cast on members requires the advanced query parameters: \
             add $count=true and the 'ConsistencyLevel: eventual' header. \
             Refer to https://aka.ms/graph-docs/advanced-queries for more information",
        ));
    }
    if req.q.orderby.is_some() {
        return Err(GraphError::unsupported_query(
            "$orderby on members is not emulated by the Graph emulator.",
        ));
    }
    if req.q.skip.is_some() {
        return Err(GraphError::request_bad_request(
            "'$skip' is not supported by the service.",
        ));
    }
    let mode = Mode {
        advanced: advanced || count_seg,
    };
    let (uf, gf) = match &req.q.filter {
        None => (None, None),
        Some(f) => {
            let u = filter::compile::<User>(f, mode);
            let g = filter::compile::<Group>(f, mode);
            match (u, g) {
                (Err(e), Err(_)) => return Err(e),
                (u, g) => (Some(u.ok()), Some(g.ok())),
            }
        }
    };
    let (us, gs) = match &req.q.search {
        None => (None, None),
        Some(s) => {
            if !req.eventual {
                return Err(GraphError::unsupported_query(
                    "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
                ));
            }
            let u = parse_search::<User>(s);
            let g = parse_search::<Group>(s);
            match (u, g) {
                (Err(e), Err(_)) => return Err(e),
                (u, g) => (Some(u.ok()), Some(g.ok())),
            }
        }
    };
    let matches = |id: &str, kind: MemberKind| -> bool {
        if cast.is_some_and(|c| c != kind) {
            return false;
        }
        match kind {
            MemberKind::User => {
                let Some(r) = view.users.get(id) else {
                    return false;
                };
                let f_ok = match &uf {
                    None => true,
                    Some(None) => false,
                    Some(Some(f)) => filter::eval(f, &r.obj),
                };
                let s_ok = match &us {
                    None => true,
                    Some(None) => false,
                    Some(Some(s)) => s.matches(&r.obj),
                };
                f_ok && s_ok
            }
            MemberKind::Group => {
                let Some(r) = view.groups.get(id) else {
                    return false;
                };
                let f_ok = match &gf {
                    None => true,
                    Some(None) => false,
                    Some(Some(f)) => filter::eval(f, &r.obj),
                };
                let s_ok = match &gs {
                    None => true,
                    Some(None) => false,
                    Some(Some(s)) => s.matches(&r.obj),
                };
                f_ok && s_ok
            }
        }
    };
    if count_seg {
        let n = list.iter().filter(|(id, k)| matches(id, *k)).count();
        return Ok(Reply::text(200, n.to_string()));
    }

    let page = req.q.page_size()?;
    let select_names = req.q.select_names();
    let selection = member_select(select_names.as_deref())?;
    let start = match &req.q.skiptoken {
        Some(t) => Some(decode_skiptoken(t, 'm')?),
        None => None,
    };
    let begin = match &start {
        Some(last) => list.partition_point(|(id, _)| id.as_str() <= last.as_str()),
        None => 0,
    };
    let mut items: Vec<&(String, MemberKind)> = Vec::new();
    let mut next = None;
    for entry in &list[begin..] {
        if !matches(&entry.0, entry.1) {
            continue;
        }
        if items.len() == page {
            next = Some(encode_skiptoken('m', &items[items.len() - 1].0));
            break;
        }
        items.push(entry);
    }
    let count = if advanced && start.is_none() {
        Some(list.iter().filter(|(id, k)| matches(id, *k)).count())
    } else {
        None
    };

    let user_props = match &selection {
        Some((u, _)) => u.clone(),
        None => default_props::<User>(),
    };
    let group_props = match &selection {
        Some((_, g)) => g.clone(),
        None => default_props::<Group>(),
    };
    let set = match cast {
        Some(MemberKind::User) => "users",
        Some(MemberKind::Group) => "groups",
        None => "directoryObjects",
    };
    let mut ctx_url = format!("{}/$metadata#{set}", req.shared.graph_base());
    if let Some(names) = &select_names {
        ctx_url.push('(');
        ctx_url.push_str(&names.join(","));
        ctx_url.push(')');
    }

    let mut out = String::with_capacity(256 + items.len() * 512);
    let mut top = Obj::open(&mut out);
    top.str("@odata.context", &ctx_url);
    if let Some(c) = count {
        top.raw("@odata.count", &c.to_string());
    }
    if let Some(t) = &next {
        top.str("@odata.nextLink", &req.next_link(t));
    }
    let buf = top.key("value");
    buf.push('[');
    for (n, (id, kind)) in items.iter().enumerate() {
        if n > 0 {
            buf.push(',');
        }
        let mut o = Obj::open(buf);
        o.str("@odata.type", kind.odata_type());
        match kind {
            MemberKind::User => {
                let rec = &view.users[id.as_str()];
                if view.can_read_users {
                    o.props(&rec.obj, &user_props);
                } else {
                    // "only the @odata.type property for the object type and
                    // the id is returned, while other properties are
                    // indicated as null."
                    for &i in &user_props {
                        let d = &User::props()[i];
                        if d.name == "id" {
                            o.str("id", id);
                        } else {
                            o.val(d.name, Val::Null);
                        }
                    }
                    if !user_props.iter().any(|&i| User::props()[i].name == "id") {
                        o.str("id", id);
                    }
                }
            }
            MemberKind::Group => o.props(&view.groups[id.as_str()].obj, &group_props),
        }
        o.close();
    }
    buf.push(']');
    top.close();
    Ok(Reply::json(200, out))
}

// ---------------------------------------------------------------------------
// Delta
// ---------------------------------------------------------------------------

/// State carried by delta `$skiptoken`s and `$deltatoken`s (opaque to the
/// client: base64url of this JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeltaState {
    /// Tenant id.
    t: String,
    /// Entity set.
    k: String,
    /// Round start: changes after this sequence (None: initial round).
    s: Option<u64>,
    /// Round end: changes up to this sequence.
    u: u64,
    /// Last object returned (skiptokens only).
    l: Option<String>,
    /// `$select`, canonical names.
    sel: Option<Vec<String>>,
    /// `$filter=id eq ...` scope.
    ids: Option<Vec<String>>,
    /// Membership tracked (groups).
    m: bool,
    /// Tenant delta epoch at issue.
    e: u64,
    /// Issue time (Unix seconds, emulator clock).
    i: i64,
}

fn encode_state(st: &DeltaState) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(st).expect("delta state serialises"))
}

fn decode_state(token: &str) -> Result<DeltaState, GraphError> {
    URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            GraphError::request_bad_request("The delta token or skip token is not valid.")
        })
}

fn gone(req: &Req<'_>, kind: GoneKind, st: &DeltaState) -> GraphError {
    let (code, message) = match kind {
        GoneKind::SyncStateNotFound => (
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        ),
        GoneKind::ResyncRequired => (
            "resyncRequired",
            "The delta token is no longer valid, and the app must reset the sync state.",
        ),
    };
    // "a Location header containing a request URL with an empty
    // $deltaToken (same as the initial query)".
    let mut location = format!("{}/{}/delta?", req.shared.graph_base(), st.k);
    if let Some(sel) = &st.sel {
        let mut names = sel.clone();
        if st.m && st.k == "groups" {
            names.push("members".into());
        }
        location.push_str(&format!("$select={}&", encode(&names.join(","))));
    }
    location.push_str("$deltatoken=");
    GraphError::new(410, code, message).header("Location", location)
}

fn check_state(
    req: &Req<'_>,
    tenant: &TenantState,
    st: &DeltaState,
    set: &str,
    fresh_round: bool,
) -> Result<(), GraphError> {
    if !st.t.eq_ignore_ascii_case(&tenant.id) || st.k != set {
        return Err(GraphError::request_bad_request(
            "The delta token or skip token is not valid.",
        ));
    }
    let (epoch, kind) = *lock(&tenant.delta_epoch);
    if st.e < epoch {
        return Err(gone(req, kind, st));
    }
    if fresh_round {
        let max_age = req.shared.settings().delta_token_max_age;
        if req.ctx.now.timestamp() - st.i > max_age.num_seconds() {
            return Err(gone(req, GoneKind::SyncStateNotFound, st));
        }
    }
    Ok(())
}

/// How one object appears in a delta page.
enum Change {
    Full,
    Props(Vec<usize>),
    Members,
    Removed(&'static str),
}

fn member_changes(
    m: Option<&Members>,
    since: Option<u64>,
    upto: u64,
) -> Vec<(&str, MemberKind, bool)> {
    let Some(m) = m else { return Vec::new() };
    match since {
        None => m
            .current
            .iter()
            .map(|(id, (k, _))| (id.as_str(), *k, false))
            .collect(),
        Some(s) => {
            let in_round = |seq: u64| seq > s && seq <= upto;
            let mut out: Vec<(&str, MemberKind, bool)> = m
                .current
                .iter()
                .filter(|(_, (_, seq))| in_round(*seq))
                .map(|(id, (k, _))| (id.as_str(), *k, false))
                .collect();
            out.extend(
                m.former
                    .iter()
                    .filter(|(_, (_, seq))| in_round(*seq))
                    .map(|(id, (k, _))| (id.as_str(), *k, true)),
            );
            out
        }
    }
}

fn classify<T: Entity>(
    rec: &Rec<T>,
    since: Option<u64>,
    upto: u64,
    tracked: &[usize],
    members_changed: bool,
) -> Option<Change> {
    let Some(s) = since else {
        return (rec.live() && rec.created_seq <= upto).then_some(Change::Full);
    };
    if let Some((seq, reason)) = rec.removed {
        return (seq > s && seq <= upto).then_some(Change::Removed(reason.as_str()));
    }
    if rec.created_seq > upto {
        return None;
    }
    if rec.created_seq > s {
        return Some(Change::Full);
    }
    let changed: Vec<usize> = tracked
        .iter()
        .copied()
        .filter(|&i| rec.prop_seq(i) > s && rec.prop_seq(i) <= upto)
        .collect();
    if !changed.is_empty() {
        return Some(Change::Props(changed));
    }
    members_changed.then_some(Change::Members)
}

fn delta<T: Entity>(
    req: &Req<'_>,
    tenant: &TenantState,
    map: &BTreeMap<String, Rec<T>>,
    members: Option<&BTreeMap<String, Members>>,
    current_seq: u64,
) -> Result<Reply, GraphError> {
    let set = T::SET;
    let now = req.ctx.now.timestamp();
    let epoch = lock(&tenant.delta_epoch).0;
    let q = &req.q;

    let st: DeltaState = match (&q.deltatoken, &q.skiptoken) {
        (Some(dt), _) if dt.eq_ignore_ascii_case("latest") => {
            // "sync from now": no resource data, just a deltaLink.
            let (sel, m) = delta_selection::<T>(req)?;
            let ids = delta_scope(req)?;
            let token = DeltaState {
                t: tenant.id.clone(),
                k: set.into(),
                s: Some(current_seq),
                u: 0,
                l: None,
                sel,
                ids,
                m,
                e: epoch,
                i: now,
            };
            let mut out = String::new();
            let mut o = Obj::open(&mut out);
            o.str("@odata.context", &context::<T>(req.shared, None, ""));
            o.str(
                "@odata.deltaLink",
                &format!(
                    "{}/{set}/delta?$deltatoken={}",
                    req.shared.graph_base(),
                    encode_state(&token)
                ),
            );
            o.raw("value", "[]");
            o.close();
            return Ok(Reply::json(200, out));
        }
        (Some(dt), _) if !dt.is_empty() => {
            let prev = decode_state(dt)?;
            check_state(req, tenant, &prev, set, true)?;
            DeltaState {
                s: prev.s,
                u: current_seq,
                l: None,
                ..prev
            }
        }
        (_, Some(sk)) => {
            let st = decode_state(sk)?;
            check_state(req, tenant, &st, set, false)?;
            if st.l.is_none() {
                return Err(GraphError::request_bad_request(
                    "The delta token or skip token is not valid.",
                ));
            }
            st
        }
        _ => {
            if q.orderby.is_some() || q.search.is_some() || q.count.is_some() {
                return Err(GraphError::unsupported_query(
                    "Unsupported query. $orderby, $search and $count are not supported on delta.",
                ));
            }
            let (sel, m) = delta_selection::<T>(req)?;
            DeltaState {
                t: tenant.id.clone(),
                k: set.into(),
                s: None,
                u: current_seq,
                l: None,
                sel,
                ids: delta_scope(req)?,
                m,
                e: epoch,
                i: now,
            }
        }
    };

    // Properties returned, and properties whose changes count.
    let selected: Option<Vec<usize>> = st.sel.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|n| find_prop::<T>(n).map(|(i, _)| i))
            .collect()
    });
    let id_idx = find_prop::<T>("id").expect("every entity has an id").0;
    let mut shown = selected.clone().unwrap_or_else(default_props::<T>);
    shown.retain(|&i| i != id_idx);
    let tracked: Vec<usize> = match &selected {
        Some(s) => s.clone(),
        None => T::props()
            .iter()
            .enumerate()
            .filter(|(_, d)| d.tracked)
            .map(|(i, _)| i)
            .collect(),
    };
    let ids: Option<BTreeSet<&str>> = st
        .ids
        .as_ref()
        .map(|v| v.iter().map(String::as_str).collect());
    let page = req.shared.settings().delta_page_size.max(1);
    let start = match &st.l {
        Some(l) => Bound::Excluded(l.clone()),
        None => Bound::Unbounded,
    };

    struct Item<'a, T> {
        rec: &'a Rec<T>,
        change: Change,
        members: Vec<(&'a str, MemberKind, bool)>,
    }
    let mut items: Vec<Item<'_, T>> = Vec::new();
    let mut more = false;
    for (id, rec) in map.range::<String, _>((start, Bound::Unbounded)) {
        if ids.as_ref().is_some_and(|s| !s.contains(id.as_str())) {
            continue;
        }
        let m = if st.m && rec.live() {
            member_changes(members.and_then(|m| m.get(id)), st.s, st.u)
        } else {
            Vec::new()
        };
        let Some(change) = classify(rec, st.s, st.u, &tracked, !m.is_empty()) else {
            continue;
        };
        if items.len() == page {
            more = true;
            break;
        }
        items.push(Item {
            rec,
            change,
            members: m,
        });
    }

    let mut out = String::with_capacity(256 + items.len() * 256);
    let mut top = Obj::open(&mut out);
    top.str(
        "@odata.context",
        &context::<T>(req.shared, selected.as_deref(), ""),
    );
    if more {
        let next = DeltaState {
            l: Some(items[items.len() - 1].rec.obj.id().to_string()),
            ..st.clone()
        };
        top.str(
            "@odata.nextLink",
            &format!(
                "{}/{set}/delta?$skiptoken={}",
                req.shared.graph_base(),
                encode_state(&next)
            ),
        );
    } else {
        let token = DeltaState {
            s: Some(st.u),
            u: 0,
            l: None,
            e: epoch,
            i: now,
            ..st.clone()
        };
        top.str(
            "@odata.deltaLink",
            &format!(
                "{}/{set}/delta?$deltatoken={}",
                req.shared.graph_base(),
                encode_state(&token)
            ),
        );
    }
    let buf = top.key("value");
    buf.push('[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            buf.push(',');
        }
        let mut o = Obj::open(buf);
        let obj = &item.rec.obj;
        match &item.change {
            Change::Removed(reason) => {
                o.str("id", obj.id());
                o.raw("@removed", &format!("{{\"reason\":\"{reason}\"}}"));
            }
            Change::Full => o.props(obj, &shown),
            Change::Props(changed) => {
                if req.minimal {
                    let only: Vec<usize> =
                        changed.iter().copied().filter(|i| *i != id_idx).collect();
                    o.props(obj, &only);
                } else {
                    o.props(obj, &shown);
                }
            }
            Change::Members => {
                if !req.minimal {
                    o.props(obj, &shown);
                }
            }
        }
        if !matches!(item.change, Change::Removed(_)) {
            o.str("id", obj.id());
            if !item.members.is_empty() {
                let b = o.key("members@delta");
                b.push('[');
                for (k, (mid, kind, removed)) in item.members.iter().enumerate() {
                    if k > 0 {
                        b.push(',');
                    }
                    b.push_str("{\"@odata.type\":");
                    push_str(b, kind.odata_type());
                    b.push_str(",\"id\":");
                    push_str(b, mid);
                    if *removed {
                        b.push_str(",\"@removed\":{\"reason\":\"deleted\"}");
                    }
                    b.push('}');
                }
                b.push(']');
            }
        }
        o.close();
    }
    buf.push(']');
    top.close();
    let mut reply = Reply::json(200, out);
    if req.minimal {
        reply
            .headers
            .push(("Preference-Applied".into(), "return=minimal".into()));
    }
    Ok(reply)
}

/// `$select` (and, for groups, `members` / `$expand=members`) of an
/// initial delta request: canonical names, and whether membership is
/// tracked.
fn delta_selection<T: Entity>(req: &Req<'_>) -> Result<(Option<Vec<String>>, bool), GraphError> {
    let is_groups = T::SET == "groups";
    let mut members = false;
    if let Some(e) = &req.q.expand {
        if is_groups && e.trim().eq_ignore_ascii_case("members") {
            members = true;
        } else {
            return Err(GraphError::unsupported_query(
                "Unsupported query. $expand is not supported on delta except $expand=members on groups.",
            ));
        }
    }
    let Some(mut names) = req.q.select_names() else {
        // No $select: the default properties, and members for groups.
        return Ok((None, is_groups));
    };
    if is_groups {
        let before = names.len();
        names.retain(|n| !n.eq_ignore_ascii_case("members"));
        members |= names.len() != before;
    }
    let sel = resolve_select::<T>(Some(&names), false)?.unwrap_or_default();
    Ok((
        Some(
            sel.iter()
                .map(|&i| T::props()[i].name.to_string())
                .collect(),
        ),
        members,
    ))
}

fn delta_scope(req: &Req<'_>) -> Result<Option<Vec<String>>, GraphError> {
    match &req.q.filter {
        Some(f) => Ok(Some(filter::delta_ids(f)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b.com"), "a@b.com");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn skiptokens_round_trip_and_reject_garbage() {
        let t = encode_skiptoken('k', "abc");
        assert_eq!(decode_skiptoken(&t, 'k').unwrap(), "abc");
        assert!(decode_skiptoken(&t, 'o').is_err());
        assert_eq!(
            decode_skiptoken("garbage!", 'k').unwrap_err().code,
            "Directory_ExpiredPageToken"
        );
    }

    #[test]
    fn search_syntax() {
        let s = parse_search::<User>("\"displayName:ali\" OR \"mail:bob\"").unwrap();
        let u = User::new("bob@x.com").named("Carl", "Jones");
        assert!(s.matches(&u));
        assert!(parse_search::<User>("\"displayName:ali\" XOR \"mail:bob\"").is_err());
        assert!(parse_search::<User>("displayName:ali").is_err());
    }
}
