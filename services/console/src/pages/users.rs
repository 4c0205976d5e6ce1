//! Users (U2, U3, U4, M1): the list (aliases grouped under their primary,
//! lists and public folders told apart, Source and Status columns, search,
//! filters, keyset paging), add, edit and delete, a user's page with its
//! aliases, rules and history, and the CSV export.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use roster_app::users::{self as app, Edit, NewUser};
use roster_domain::UserCommand;
use roster_events::{
    Address, CorrelationId, CustomerId, DeletionReason, Kind, Profile, RuleKind, Source, Status,
};
use roster_projections::console as reads;
use roster_projections::queries::{self, UserFilter};
use roster_projections::users::UserRow;
use serde::Deserialize;

use super::history::{timeline, HistoryItem};
use super::view::{self, kind_label, source_label, status_label, when, when_opt};
use super::CustomerPage;
use crate::error::PageError;
use crate::layout::{render, section, Flash, Layout};
use crate::session::CurrentAdmin;
use crate::ConsoleState;

/// Rows per page of the list.
pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Default, Clone, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub page: String,
    /// Time travel (B7): the list as it was at this instant, read-only.
    #[serde(default)]
    pub at: String,
}

impl ListQuery {
    /// The filter this query asks for; an unknown value is a bad request
    /// that says which values exist.
    pub(crate) fn filter(&self) -> Result<UserFilter, PageError> {
        fn pick(v: &str) -> Option<&str> {
            Some(v.trim()).filter(|v| !v.is_empty())
        }
        Ok(UserFilter {
            q: pick(&self.q).map(str::to_string),
            kind: match pick(&self.kind) {
                Some(k) => Some(Kind::parse(k).ok_or_else(|| {
                    view::bad("Type must be user, distribution_list or public_folder.")
                })?),
                None => None,
            },
            status: match pick(&self.status) {
                Some(s) => Some(Status::parse(s).ok_or_else(|| {
                    view::bad("Status must be active, pending_deletion, deactivated or deleted.")
                })?),
                None => None,
            },
            source: match pick(&self.source) {
                Some(s) => Some(Source::parse(s).ok_or_else(|| {
                    view::bad("Source must be manual, csv, ldap, entra or smtp.")
                })?),
                None => None,
            },
        })
    }

    /// The query string of these filters (without the page).
    fn href(&self, base: &str, page: Option<&str>) -> String {
        view::href(
            base,
            [
                ("q", self.q.as_str()),
                ("kind", &self.kind),
                ("status", &self.status),
                ("source", &self.source),
                ("page", page.unwrap_or("")),
            ],
        )
    }
}

pub struct UserItem {
    pub href: String,
    pub address: String,
    pub aliases: Vec<String>,
    pub name: String,
    pub kind: &'static str,
    pub source: &'static str,
    pub status: &'static str,
    pub delete_at: String,
    pub flag: String,
}

impl UserItem {
    pub(crate) fn of(customer: &str, r: &UserRow) -> Self {
        UserItem {
            href: view::user_href(customer, &r.address),
            address: view::address(&r.address),
            aliases: r.aliases.iter().map(|a| view::address(a)).collect(),
            name: view::full_name(&r.profile),
            kind: kind_label(r.kind),
            source: source_label(r.source),
            status: status_label(r.status),
            delete_at: when_opt(r.delete_at),
            flag: r
                .flag_reason
                .map(|f| view::flag_label(f).to_string())
                .unwrap_or_default(),
        }
    }
}

type Choice = (&'static str, &'static str);
/// An option of a select: value, label, selected.
type Picked = (&'static str, &'static str, bool);

fn picked(choices: &[Choice], current: &str) -> Vec<Picked> {
    choices
        .iter()
        .map(|(v, l)| (*v, *l, *v == current.trim()))
        .collect()
}

const KINDS: [Choice; 4] = [
    ("", "All types"),
    ("user", "Users"),
    ("distribution_list", "Distribution lists"),
    ("public_folder", "Public folders"),
];
const FORM_KINDS: [Choice; 3] = [
    ("user", "User (takes a seat)"),
    ("distribution_list", "Distribution list (no seat)"),
    ("public_folder", "Public folder (no seat)"),
];
const STATUSES: [Choice; 5] = [
    ("", "Every status but deleted"),
    ("active", "Active"),
    ("pending_deletion", "Pending deletion"),
    ("deactivated", "Deactivated"),
    ("deleted", "Deleted"),
];
const SOURCES: [Choice; 6] = [
    ("", "Every source"),
    ("manual", "Manual"),
    ("csv", "CSV"),
    ("ldap", "LDAP"),
    ("entra", "Entra ID (Azure)"),
    ("smtp", "SMTP"),
];

#[derive(Template)]
#[template(path = "pages/users.html")]
struct UsersPage {
    layout: Layout,
    name: String,
    /// The "Show as of" field's value (now, to the minute).
    now_value: String,
    action: String,
    add_href: String,
    import_href: String,
    export_href: String,
    filter: ListQuery,
    kinds: Vec<Picked>,
    statuses: Vec<Picked>,
    sources: Vec<Picked>,
    licence_line: String,
    users: Vec<UserItem>,
    first_href: String,
    next_href: String,
}

/// GET /customers/{c}/users
pub async fn list(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    if !query.at.trim().is_empty() {
        return super::timetravel::list(&state, scoped, query).await;
    }
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let store = &state.app.store;
    let filter = query.filter()?;
    let page = Some(query.page.trim()).filter(|p| !p.is_empty());
    let found = queries::list_users(store, customer, &filter, page, PAGE_SIZE).await?;
    let licence = queries::licence(store, customer).await?;
    let c_str = customer.to_string();
    let base = format!("{}/users", view::customer_href(&c_str));
    Ok(render(&UsersPage {
        layout: super::layout(&admin, &row, format!("{}: users", row.name), section::USERS),
        name: row.name.clone(),
        now_value: super::timetravel::field_value(state.now()),
        add_href: format!("{base}/new"),
        import_href: format!("{}/import", view::customer_href(&c_str)),
        export_href: query.href(&format!("{base}.csv"), None),
        licence_line: format!(
            "{} of {} seats used; {} aliases, {} distribution lists and {} public folders take none",
            licence.seats_used,
            licence.seat_limit,
            licence.aliases,
            licence.distribution_lists,
            licence.public_folders
        ),
        users: found.items.iter().map(|r| UserItem::of(&c_str, r)).collect(),
        first_href: if page.is_some() {
            query.href(&base, None)
        } else {
            String::new()
        },
        next_href: found
            .next_page
            .as_deref()
            .map(|p| query.href(&base, Some(p)))
            .unwrap_or_default(),
        action: base,
        kinds: picked(&KINDS, &query.kind),
        statuses: picked(&STATUSES, &query.status),
        sources: picked(&SOURCES, &query.source),
        filter: query,
    }))
}

/// The fields of the add and edit forms, as typed.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub home_phone: String,
    #[serde(default)]
    pub mobile: String,
    #[serde(default)]
    pub company: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub aliases: String,
}

fn field(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

impl UserForm {
    fn of(r: &UserRow) -> Self {
        let p = &r.profile;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        UserForm {
            address: r.address.clone(),
            kind: r.kind.as_str().to_string(),
            first_name: s(&p.first_name),
            last_name: s(&p.last_name),
            home_phone: s(&p.home_phone),
            mobile: s(&p.mobile),
            company: s(&p.company),
            department: s(&p.department),
            notes: s(&p.notes),
            aliases: r.aliases.join("\n"),
        }
    }

    fn profile(&self) -> Profile {
        Profile {
            first_name: field(&self.first_name),
            last_name: field(&self.last_name),
            home_phone: field(&self.home_phone),
            mobile: field(&self.mobile),
            company: field(&self.company),
            department: field(&self.department),
            // Notes keep their inner line breaks.
            notes: field(&self.notes).map(|n| n.replace("\r\n", "\n")),
        }
    }

    fn aliases(&self) -> Result<Vec<Address>, PageError> {
        self.aliases
            .split(['\n', ',', ';'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                Address::parse(a)
                    .map_err(|e| view::bad(format!("The alias “{a}” is not an address: {e}")))
            })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "pages/user_form.html")]
struct UserFormPage {
    layout: Layout,
    csrf: String,
    name: String,
    editing: bool,
    kinds: Vec<Picked>,
    action: String,
    back: String,
    form: UserForm,
}

fn form_page(
    admin: &CurrentAdmin,
    row: &roster_projections::queries::CustomerRow,
    editing: bool,
    form: UserForm,
    error: Option<String>,
) -> Result<Response, PageError> {
    let c = view::customer_href(&row.customer_id);
    let (action, back) = if editing {
        let href = view::user_href(&row.customer_id, &form.address);
        (format!("{href}/edit"), href)
    } else {
        (format!("{c}/users/new"), format!("{c}/users"))
    };
    let title = if editing {
        format!("Edit {}", view::address(&form.address))
    } else {
        "Add a user".to_string()
    };
    let mut layout: Layout = super::layout(admin, row, title, section::USERS);
    let status = if error.is_some() {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    } else {
        axum::http::StatusCode::OK
    };
    if let Some(e) = error {
        layout = layout.flash(Flash::error(e));
    }
    let page = render(&UserFormPage {
        layout,
        kinds: picked(&FORM_KINDS, &form.kind),
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        editing,
        action,
        back,
        form,
    });
    Ok((status, page).into_response())
}

/// GET /customers/{c}/users/new
pub async fn new_form(scoped: CustomerPage) -> Result<Response, PageError> {
    let CustomerPage { admin, row, .. } = scoped;
    let form = UserForm {
        kind: "user".into(),
        ..UserForm::default()
    };
    form_page(&admin, &row, false, form, None)
}

/// POST /customers/{c}/users/new: M1, the one add-user path (seats, T3).
pub async fn create(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path(c): Path<String>,
    Form(form): Form<UserForm>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let user = match parse_new(&form) {
        Ok(u) => u,
        Err(e) => return form_page(&admin, &row, false, form, Some(view::message(&e))),
    };
    let address = user.address.clone();
    let app = &state.app;
    let meta = admin.meta(customer, &state);
    match app
        .written(app::add_user(app, meta, user, Source::Manual))
        .await
    {
        Ok(_) => Ok(Redirect::to(&view::user_href(&c, address.as_str())).into_response()),
        Err(e) => form_page(
            &admin,
            &row,
            false,
            form,
            Some(view::message(&PageError::from(e))),
        ),
    }
}

fn parse_new(form: &UserForm) -> Result<NewUser, PageError> {
    let address = Address::parse(form.address.trim())
        .map_err(|e| view::bad(format!("The primary address is not valid: {e}")))?;
    let kind = match field(&form.kind) {
        None => Kind::User,
        Some(k) => Kind::parse(&k)
            .ok_or_else(|| view::bad("Type must be user, distribution_list or public_folder."))?,
    };
    let profile = form.profile();
    if let Err((name, why)) = profile.check() {
        return Err(view::bad(format!("{} {why}.", name.replace('_', " "))));
    }
    Ok(NewUser {
        address,
        kind,
        profile,
        aliases: form.aliases()?,
    })
}

/// The live user with this primary address, or the not-found page.
async fn user_of(
    state: &ConsoleState,
    customer: CustomerId,
    address: &str,
) -> Result<UserRow, PageError> {
    let address = Address::parse(address).map_err(|_| PageError::NotFound)?;
    queries::user_by_address(&state.app.store, customer, address.as_str())
        .await?
        .ok_or(PageError::NotFound)
}

/// GET /customers/{c}/users/{address}/edit
pub async fn edit_form(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, address)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let user = user_of(&state, customer, &address).await?;
    form_page(&admin, &row, true, UserForm::of(&user), None)
}

/// POST /customers/{c}/users/{address}/edit: every field as typed (an
/// emptied field is cleared), the whole set of aliases.
pub async fn update(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((c, address)): Path<(String, String)>,
    Form(mut form): Form<UserForm>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let user = user_of(&state, customer, &address).await?;
    form.address = user.address.clone();
    let aliases = match form.aliases() {
        Ok(a) => a,
        Err(e) => return form_page(&admin, &row, true, form, Some(view::message(&e))),
    };
    let p = form.profile();
    let edit = Edit {
        profile: p.into(),
        aliases: Some(aliases),
        status: None,
    };
    let address = Address::parse(&user.address).map_err(|_| PageError::NotFound)?;
    let app = &state.app;
    match app
        .written(app::edit_user(
            app,
            admin.meta(customer, &state),
            address,
            edit,
        ))
        .await
    {
        Ok(_) => Ok(Redirect::to(&view::user_href(&c, &user.address)).into_response()),
        Err(e) => form_page(
            &admin,
            &row,
            true,
            form,
            Some(view::message(&PageError::from(e))),
        ),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    pub confirm: String,
}

/// POST /customers/{c}/users/{address}/delete: deletes now, with the
/// user's rules (M1, U5).
pub async fn delete(
    State(state): State<ConsoleState>,
    admin: CurrentAdmin,
    Path((c, address)): Path<(String, String)>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, PageError> {
    let customer = admin.customer(&state, &c).await?;
    let user = user_of(&state, customer, &address).await?;
    if form.confirm != "yes" {
        return Err(view::bad(
            "Tick “I want to delete” to confirm the deletion.",
        ));
    }
    let address = Address::parse(&user.address).map_err(|_| PageError::NotFound)?;
    let meta = admin.meta(customer, &state);
    let at = meta.time;
    let app = &state.app;
    app.written(app::user_command(app, meta, &address, || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    }))
    .await?;
    Ok(Redirect::to(&format!("{}/users", view::customer_href(&c))).into_response())
}

#[derive(Template)]
#[template(path = "pages/user.html")]
struct UserPage {
    layout: Layout,
    csrf: String,
    user: UserItem,
    fields: Vec<(&'static str, String)>,
    members: Vec<String>,
    rules: Vec<(String, String, String)>,
    history: Vec<HistoryItem>,
    edit_href: String,
    delete_action: String,
    directory_sourced: bool,
}

/// `?at=`: a page as it was at an instant (B7).
#[derive(Debug, Default, Deserialize)]
pub struct AtQuery {
    #[serde(default)]
    pub at: String,
}

/// GET /customers/{c}/users/{address}: aliases, rules, history; with
/// `?at=`, the user as it was then (read-only).
pub async fn show(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Path((_, address)): Path<(String, String)>,
    Query(past): Query<AtQuery>,
) -> Result<Response, PageError> {
    if !past.at.trim().is_empty() {
        return super::timetravel::show(&state, scoped, &address, &past.at).await;
    }
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let user = user_of(&state, customer, &address).await?;
    let store = &state.app.store;
    let events = queries::history(store, customer, &user.address).await?;
    let mut ids: Vec<CorrelationId> = events.iter().map(|e| e.correlation_id).collect();
    ids.sort();
    ids.dedup();
    let imports = reads::imports_among(store, customer, &ids).await?;
    let c_str = customer.to_string();
    let p = &user.profile;
    let fields = [
        ("Home phone", &p.home_phone),
        ("Mobile", &p.mobile),
        ("Company", &p.company),
        ("Department", &p.department),
        ("Notes", &p.notes),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect();
    let href = view::user_href(&c_str, &user.address);
    Ok(render(&UserPage {
        layout: super::layout(&admin, &row, view::address(&user.address), section::USERS),
        csrf: admin.csrf.clone(),
        fields,
        members: user.members.iter().map(|m| view::address(m)).collect(),
        rules: user
            .rules
            .iter()
            .map(|r| {
                let kind = match r.kind {
                    RuleKind::Allow => "Allow",
                    RuleKind::Deny => "Deny",
                };
                (kind.to_string(), r.value.clone(), when(r.created_at))
            })
            .collect(),
        history: timeline(&c_str, &events, &imports),
        edit_href: format!("{href}/edit"),
        delete_action: format!("{href}/delete"),
        directory_sourced: matches!(user.source.as_str(), "ldap" | "entra"),
        user: UserItem::of(&c_str, &user),
    }))
}
