//! The Exceptions tab (D3.o): the directory as last read, searchable and
//! paged, an arrow on each row that moves it to the exception list, and
//! the list with remove. The Additions tab (D3.p): type an address, Add;
//! the list with remove. Each click is saved at once through
//! [`roster_sync::SyncService`].

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use roster_events::{Address, DirectoryKind, Exception, ObjectSummary};
use serde::Deserialize;

use super::{base, tabs, Tab};
use crate::error::PageError;
use crate::layout::{redirect_with, render, section, Flash, Layout};
use crate::pages::view::{self, directory_label};
use crate::pages::CustomerPage;
use crate::ConsoleState;

/// Directory objects per page.
const PAGE: i64 = 50;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/customers/{c}/directory/exceptions", get(exceptions))
        .route(
            "/customers/{c}/directory/exceptions/add",
            post(add_exception),
        )
        .route(
            "/customers/{c}/directory/exceptions/remove",
            post(remove_exception),
        )
        .route("/customers/{c}/directory/additions", get(additions))
        .route("/customers/{c}/directory/additions/add", post(add_addition))
        .route(
            "/customers/{c}/directory/additions/remove",
            post(remove_addition),
        )
}

/// A row of the directory as last read.
pub struct ObjectItem {
    pub kind: &'static str,
    pub kind_value: &'static str,
    pub name: String,
    pub mail: String,
    pub dn: String,
    pub object_id: String,
    pub disabled: bool,
    pub excepted: bool,
    /// Its aliases, each with whether it is on the list.
    pub aliases: Vec<(String, bool)>,
}

/// An entry of the exception list.
pub struct ExceptionItem {
    pub kind: &'static str,
    pub kind_value: &'static str,
    pub label: String,
    pub object_id: String,
    pub address: String,
}

#[derive(Template)]
#[template(path = "pages/directory_exceptions.html")]
struct ExceptionsPage {
    layout: Layout,
    csrf: String,
    name: String,
    tabs: Vec<Tab>,
    directory: String,
    q: String,
    kind: String,
    objects: Vec<ObjectItem>,
    exceptions: Vec<ExceptionItem>,
    self_href: String,
    next_href: String,
    add_action: String,
    remove_action: String,
    /// Where the buttons come back to (this page as shown).
    back: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectsQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub page: String,
}

fn kind_label(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "user" => ("User", "user"),
        "group" => ("Group", "group"),
        "public_folder" => ("Public folder", "public_folder"),
        _ => ("Object", "object"),
    }
}

fn object_item(o: ObjectSummary, listed: &std::collections::BTreeSet<Exception>) -> ObjectItem {
    let (kind, kind_value) = kind_label(&o.kind);
    let excepted = match kind_value {
        "group" => listed.contains(&Exception::Group {
            object_id: o.id.clone(),
        }),
        _ => listed.contains(&Exception::User {
            object_id: o.id.clone(),
        }),
    };
    let aliases = o
        .aliases
        .iter()
        .map(|a| {
            let on = Address::parse_stored(a)
                .map(|address| listed.contains(&Exception::Alias { address }))
                .unwrap_or(false);
            (view::address(a), on)
        })
        .collect();
    ObjectItem {
        kind,
        kind_value,
        name: o.display_name.clone().unwrap_or_default(),
        mail: o.mail.as_deref().map(view::address).unwrap_or_default(),
        dn: o.dn.clone().unwrap_or_default(),
        object_id: o.id,
        disabled: o.disabled,
        excepted,
        aliases,
    }
}

/// GET /customers/{c}/directory/exceptions
pub async fn exceptions(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Query(query): Query<ObjectsQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let c = &row.customer_id;
    let kind = match query.kind.trim() {
        "" => None,
        k @ ("user" | "group" | "public_folder") => Some(k),
        _ => return Err(view::bad("Kind must be user, group or public_folder.")),
    };
    let dir = state.sync.directory(customer).await?;
    let store = &state.app.store;
    let (objects, next) = roster_projections::directory::objects(
        store,
        customer,
        Some(query.q.trim()),
        kind,
        Some(query.page.trim()).filter(|p| !p.is_empty()),
        PAGE,
    )
    .await?;
    let known = roster_projections::directory::object_summaries(store, customer).await?;
    let label_of = |id: &str| {
        known
            .get(id)
            .map(|o| {
                let name = o.display_name.clone().unwrap_or_default();
                match &o.mail {
                    Some(m) if !name.is_empty() => format!("{name} ({})", view::address(m)),
                    Some(m) => view::address(m),
                    None => name,
                }
            })
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| format!("{id} (not in the last read)"))
    };
    let exceptions = dir
        .exceptions
        .iter()
        .map(|e| match e {
            Exception::User { object_id } => ExceptionItem {
                kind: "User",
                kind_value: "user",
                label: label_of(object_id),
                object_id: object_id.clone(),
                address: String::new(),
            },
            Exception::Group { object_id } => ExceptionItem {
                kind: "Group",
                kind_value: "group",
                label: label_of(object_id),
                object_id: object_id.clone(),
                address: String::new(),
            },
            Exception::Alias { address } => ExceptionItem {
                kind: "Alias",
                kind_value: "alias",
                label: view::address(address.as_str()),
                object_id: String::new(),
                address: address.to_string(),
            },
        })
        .collect();
    let b = base(c);
    let self_href = format!("{b}/exceptions");
    let filters = format!(
        "q={}&kind={}",
        view::encode(query.q.trim()),
        view::encode(query.kind.trim())
    );
    let back = match query.page.trim() {
        "" => format!("{self_href}?{filters}"),
        p => format!("{self_href}?{filters}&page={}", view::encode(p)),
    };
    let next_href = next
        .map(|n| {
            format!(
                "{self_href}?{filters}&page={}",
                view::encode(&n.to_string())
            )
        })
        .unwrap_or_default();
    Ok(render(&ExceptionsPage {
        layout: super::super::layout(
            &admin,
            &row,
            format!("{}: directory exceptions", row.name),
            section::DIRECTORY,
        ),
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        tabs: tabs(c, "exceptions"),
        directory: dir
            .enabled
            .or_else(|| dir.configs.keys().next().copied())
            .map(directory_label)
            .unwrap_or("the directory")
            .to_string(),
        q: query.q.trim().to_string(),
        kind: query.kind.trim().to_string(),
        objects: objects
            .into_iter()
            .map(|o| object_item(o, &dir.exceptions))
            .collect(),
        exceptions,
        add_action: format!("{b}/exceptions/add"),
        remove_action: format!("{b}/exceptions/remove"),
        self_href,
        next_href,
        back,
    }))
}

/// What an arrow or a remove button sends.
#[derive(Debug, Default, Deserialize)]
pub struct ExceptionForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub object_id: String,
    #[serde(default)]
    pub address: String,
    /// The page to come back to (within this customer's exceptions page).
    #[serde(default)]
    pub back: String,
    /// The object's name as the page showed it, for the message.
    #[serde(default)]
    pub label: String,
}

impl ExceptionForm {
    fn parse(&self) -> Result<(Exception, String), PageError> {
        let id = || {
            let id = self.object_id.trim().to_ascii_lowercase();
            if id.is_empty() {
                Err(view::bad("Choose a user or group of the directory."))
            } else {
                Ok(id)
            }
        };
        let named = |what: &str| {
            let label: String = self.label.trim().chars().take(200).collect();
            if label.is_empty() {
                format!("The {what}")
            } else {
                format!("The {what} {label}")
            }
        };
        match self.kind.trim() {
            "user" | "public_folder" => {
                let object_id = id()?;
                Ok((Exception::User { object_id }, named("user")))
            }
            "group" => {
                let object_id = id()?;
                Ok((Exception::Group { object_id }, named("group")))
            }
            "alias" => {
                let address = Address::parse_stored(self.address.trim())
                    .map_err(|e| view::bad(format!("Not an address: {e}")))?;
                let label = format!("The alias {}", view::address(address.as_str()));
                Ok((Exception::Alias { address }, label))
            }
            _ => Err(view::bad("Kind must be user, group or alias.")),
        }
    }

    /// Where to go after the change: the page it came from, if it is this
    /// customer's exceptions page, else that page.
    fn back(&self, c: &str) -> String {
        let page = format!("{}/exceptions", base(c));
        if self.back == page || self.back.starts_with(&format!("{page}?")) {
            self.back.clone()
        } else {
            page
        }
    }
}

/// POST /customers/{c}/directory/exceptions/add: the arrow (D3.o).
pub async fn add_exception(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<ExceptionForm>,
) -> Result<Response, PageError> {
    change_exception(state, scoped, form, true).await
}

/// POST /customers/{c}/directory/exceptions/remove
pub async fn remove_exception(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<ExceptionForm>,
) -> Result<Response, PageError> {
    change_exception(state, scoped, form, false).await
}

async fn change_exception(
    state: ConsoleState,
    scoped: CustomerPage,
    form: ExceptionForm,
    add: bool,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let back = form.back(&row.customer_id.to_string());
    let (exception, label) = form.parse()?;
    let meta = admin.meta(customer, &state);
    let done = if add {
        state
            .app
            .written(state.sync.add_exception(&meta, exception))
            .await
    } else {
        state
            .app
            .written(state.sync.remove_exception(&meta, exception))
            .await
    };
    let flash = match done {
        Ok(_) if add => Flash::success(format!(
            "{label} is on the exception list: syncs no longer add, update or flag it."
        )),
        Ok(_) => Flash::success(format!(
            "{label} is off the exception list: the next sync treats it like any other."
        )),
        Err(e) => Flash::error(view::message(&PageError::from(e))),
    };
    Ok(redirect_with(&back, flash, state.config.secure()))
}

#[derive(Template)]
#[template(path = "pages/directory_additions.html")]
struct AdditionsPage {
    layout: Layout,
    csrf: String,
    name: String,
    tabs: Vec<Tab>,
    directory: String,
    source: String,
    additions: Vec<(String, String)>,
    add_action: String,
    remove_action: String,
    users_href: String,
    address: String,
}

/// GET /customers/{c}/directory/additions
pub async fn additions(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let dir = state.sync.directory(customer).await?;
    let kind = dir.enabled.or_else(|| dir.configs.keys().next().copied());
    let c = &row.customer_id;
    let b = base(c);
    Ok(render(&AdditionsPage {
        layout: super::super::layout(
            &admin,
            &row,
            format!("{}: directory additions", row.name),
            section::DIRECTORY,
        ),
        csrf: admin.csrf.clone(),
        name: row.name.clone(),
        tabs: tabs(c, "additions"),
        directory: kind
            .map(directory_label)
            .unwrap_or("the directory")
            .to_string(),
        source: match kind {
            Some(DirectoryKind::Entra) => "Entra ID",
            Some(DirectoryKind::Ldap) => "LDAP",
            None => "",
        }
        .to_string(),
        additions: dir
            .additions
            .iter()
            .map(|a| (view::address(a.as_str()), view::user_href(c, a.as_str())))
            .collect(),
        add_action: format!("{b}/additions/add"),
        remove_action: format!("{b}/additions/remove"),
        users_href: format!("{}/users", view::customer_href(c)),
        address: String::new(),
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct AdditionForm {
    #[serde(default)]
    pub address: String,
}

/// POST /customers/{c}/directory/additions/add (D3.p): the user is created
/// at once with the directory as its source.
pub async fn add_addition(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<AdditionForm>,
) -> Result<Response, PageError> {
    change_addition(state, scoped, form, true).await
}

/// POST /customers/{c}/directory/additions/remove: the user stays; the
/// next sync decides about it like any other.
pub async fn remove_addition(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    Form(form): Form<AdditionForm>,
) -> Result<Response, PageError> {
    change_addition(state, scoped, form, false).await
}

async fn change_addition(
    state: ConsoleState,
    scoped: CustomerPage,
    form: AdditionForm,
    add: bool,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let back = format!("{}/additions", base(&row.customer_id));
    let typed = form.address.trim();
    let parsed = if add {
        Address::parse(typed)
    } else {
        Address::parse_stored(typed)
    };
    let address = match parsed {
        Ok(a) => a,
        Err(e) => {
            let m = if typed.is_empty() {
                "Type the email address of the user to add, then Add.".to_string()
            } else {
                format!("“{typed}” is not an email address: {e}")
            };
            return Ok(redirect_with(&back, Flash::error(m), state.config.secure()));
        }
    };
    let shown = view::address(address.as_str());
    let dir = state.sync.directory(customer).await?;
    let source = dir
        .enabled
        .or_else(|| dir.configs.keys().next().copied())
        .map(directory_label)
        .unwrap_or("the directory");
    let meta = admin.meta(customer, &state);
    let done = if add {
        state
            .app
            .written(state.sync.add_addition(&meta, address))
            .await
    } else {
        state
            .app
            .written(state.sync.remove_addition(&meta, address))
            .await
    };
    let flash = match done {
        Ok(_) if add => Flash::success(format!(
            "{shown} added: it is in the user list with {source} as its source, and syncs do not flag it while it stays on this list."
        )),
        Ok(_) => Flash::success(format!(
            "{shown} is off the additions list: the user stays, and the next sync decides about it like any other."
        )),
        Err(e) => Flash::error(view::message(&PageError::from(e))),
    };
    Ok(redirect_with(&back, flash, state.config.secure()))
}
