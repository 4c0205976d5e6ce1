//! The Exceptions tab (D3.o): the directory as last read, searchable and
//! paged, an arrow on each row that moves it to the exception list, the
//! list with remove, and Save, as the guide has it (the page holds the
//! changes until then). The Additions tab (D3.p): type an address, Add;
//! the list with remove, saved at once. Both write through
//! [`roster_sync::SyncService`].

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Form, Router};
use roster_events::{Address, DirectoryKind, Exception, ObjectSummary};
use std::collections::BTreeSet;

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
            "/customers/{c}/directory/exceptions/save",
            post(save_exceptions),
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
    pub name: String,
    pub mail: String,
    pub dn: String,
    pub disabled: bool,
    /// On the exception list, saved or about to be.
    pub excepted: bool,
    /// The arrow: this page with the object staged for the list.
    pub add_href: String,
    /// Its aliases: the address, whether it is on the list, its arrow.
    pub aliases: Vec<(String, bool, String)>,
}

/// An entry of the exception list as the page shows it.
pub struct ExceptionItem {
    pub kind: &'static str,
    pub label: String,
    /// Empty (saved), `not saved yet` or `removed when you save`.
    pub state: &'static str,
    /// The page with this entry's change staged (Remove) or undone (Undo).
    pub href: String,
    pub action: &'static str,
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
    save_action: String,
    /// The staged changes (the Save form sends them).
    staged: String,
    changes: usize,
    /// This page without the staged changes.
    discard_href: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ObjectsQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub page: String,
    /// The changes made on the page and not saved yet ([`Staged`]).
    #[serde(default)]
    pub staged: String,
}

/// The most changes one Save takes.
const MOST_STAGED: usize = 200;

/// A change the page holds until Save, as the guide has it ("click the
/// blue arrow ..., click Save"): one exception added or removed. In the
/// page's links and its Save form it is a token, `+u:<id>` (a user or
/// public folder), `+g:<id>` (a group), `+a:<address>` (an alias), with
/// `-` for a removal; tokens are separated by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub add: bool,
    pub exception: Exception,
}

impl Staged {
    fn token(&self) -> String {
        let sign = if self.add { '+' } else { '-' };
        match &self.exception {
            Exception::User { object_id } => format!("{sign}u:{object_id}"),
            Exception::Group { object_id } => format!("{sign}g:{object_id}"),
            Exception::Alias { address } => format!("{sign}a:{address}"),
        }
    }

    /// The staged changes of a page, the last change of an exception
    /// winning; what to fix when a token is not one.
    pub fn parse_all(raw: &str) -> Result<Vec<Staged>, String> {
        let mut out: Vec<Staged> = Vec::new();
        for t in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let bad = || {
                format!("The unsaved change {t:?} is not one this page makes: discard the changes and make them again.")
            };
            let (add, rest) = match t.as_bytes()[0] {
                b'+' => (true, &t[1..]),
                b'-' => (false, &t[1..]),
                _ => return Err(bad()),
            };
            let (kind, value) = rest.split_once(':').ok_or_else(bad)?;
            let value = value.trim();
            let id = || {
                Some(value.to_ascii_lowercase())
                    .filter(|v| !v.is_empty())
                    .ok_or_else(bad)
            };
            let exception = match kind {
                "u" => Exception::User { object_id: id()? },
                "g" => Exception::Group { object_id: id()? },
                "a" => Exception::Alias {
                    address: Address::parse_stored(value).map_err(|_| bad())?,
                },
                _ => return Err(bad()),
            };
            out.retain(|o| o.exception != exception);
            out.push(Staged { add, exception });
        }
        if out.len() > MOST_STAGED {
            return Err(format!(
                "{} unsaved changes: at most {MOST_STAGED} at a time. Save fewer, then go on.",
                out.len()
            ));
        }
        Ok(out)
    }

    fn join(all: &[Staged]) -> String {
        all.iter().map(Staged::token).collect::<Vec<_>>().join(",")
    }
}

/// The exceptions page's links: its filters, its page and the staged
/// changes.
struct Links<'a> {
    self_href: String,
    query: &'a ObjectsQuery,
    staged: &'a [Staged],
}

impl Links<'_> {
    fn with(&self, staged: &[Staged], page: &str) -> String {
        let staged = Staged::join(staged);
        view::href(
            &self.self_href,
            [
                ("q", self.query.q.as_str()),
                ("kind", &self.query.kind),
                ("page", page),
                ("staged", &staged),
            ],
        )
    }

    /// This page with one more change staged (or one undone: `undo`).
    fn change(&self, change: Staged, undo: bool) -> String {
        let mut all: Vec<Staged> = self
            .staged
            .iter()
            .filter(|s| s.exception != change.exception)
            .cloned()
            .collect();
        if !undo {
            all.push(change);
        }
        self.with(&all, &self.query.page)
    }
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "user" => "User",
        "group" => "Group",
        "public_folder" => "Public folder",
        _ => "Object",
    }
}

fn object_item(o: ObjectSummary, listed: &BTreeSet<Exception>, links: &Links) -> ObjectItem {
    let exception = match o.kind.as_str() {
        "group" => Exception::Group {
            object_id: o.id.clone(),
        },
        _ => Exception::User {
            object_id: o.id.clone(),
        },
    };
    let aliases = o
        .aliases
        .iter()
        .map(|a| match Address::parse_stored(a) {
            Ok(address) => {
                let exception = Exception::Alias { address };
                let on = listed.contains(&exception);
                let href = links.change(
                    Staged {
                        add: true,
                        exception,
                    },
                    false,
                );
                (view::address(a), on, href)
            }
            Err(_) => (view::address(a), false, String::new()),
        })
        .collect();
    ObjectItem {
        kind: kind_label(&o.kind),
        name: o.display_name.clone().unwrap_or_default(),
        mail: o.mail.as_deref().map(view::address).unwrap_or_default(),
        dn: o.dn.clone().unwrap_or_default(),
        disabled: o.disabled,
        excepted: listed.contains(&exception),
        add_href: links.change(
            Staged {
                add: true,
                exception,
            },
            false,
        ),
        aliases,
    }
}

/// The exception list as the page shows it: the saved entries (those
/// staged for removal marked so) and the staged additions.
fn exception_items(
    saved: &BTreeSet<Exception>,
    links: &Links,
    label_of: impl Fn(&str) -> String,
) -> Vec<ExceptionItem> {
    let staged_of = |e: &Exception| links.staged.iter().find(|s| &s.exception == e);
    let item = |e: &Exception, state: &'static str, href: String, action: &'static str| {
        let (kind, label) = match e {
            Exception::User { object_id } => ("User", label_of(object_id)),
            Exception::Group { object_id } => ("Group", label_of(object_id)),
            Exception::Alias { address } => ("Alias", view::address(address.as_str())),
        };
        ExceptionItem {
            kind,
            label,
            state,
            href,
            action,
        }
    };
    let mut out: Vec<ExceptionItem> = saved
        .iter()
        .map(|e| {
            let change = Staged {
                add: false,
                exception: e.clone(),
            };
            match staged_of(e) {
                Some(s) if !s.add => item(
                    e,
                    "removed when you save",
                    links.change(change, true),
                    "Undo",
                ),
                _ => item(e, "", links.change(change, false), "Remove"),
            }
        })
        .collect();
    out.extend(
        links
            .staged
            .iter()
            .filter(|s| s.add && !saved.contains(&s.exception))
            .map(|s| {
                item(
                    &s.exception,
                    "not saved yet",
                    links.change(s.clone(), true),
                    "Undo",
                )
            }),
    );
    out
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
    let staged = Staged::parse_all(&query.staged).map_err(view::bad)?;
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
    let links = Links {
        self_href: format!("{}/exceptions", base(c)),
        query: &query,
        staged: &staged,
    };
    // What the list holds once the staged changes are saved.
    let mut listed = dir.exceptions.clone();
    for s in &staged {
        if s.add {
            listed.insert(s.exception.clone());
        } else {
            listed.remove(&s.exception);
        }
    }
    let next_href = next
        .map(|n| links.with(&staged, &n.to_string()))
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
            .map(|o| object_item(o, &listed, &links))
            .collect(),
        exceptions: exception_items(&dir.exceptions, &links, label_of),
        save_action: format!("{}/exceptions/save", base(c)),
        staged: Staged::join(&staged),
        changes: staged.len(),
        discard_href: links.with(&[], &query.page),
        self_href: links.self_href.clone(),
        next_href,
    }))
}

/// POST /customers/{c}/directory/exceptions/save (D3.o): every staged
/// change, each through the application layer; the page says what was
/// saved and what was not, and why.
pub async fn save_exceptions(
    State(state): State<ConsoleState>,
    scoped: CustomerPage,
    // The page's own query: its filters, its page and the staged changes.
    Form(form): Form<ObjectsQuery>,
) -> Result<Response, PageError> {
    let CustomerPage {
        admin,
        customer,
        row,
    } = scoped;
    let staged = Staged::parse_all(&form.staged).map_err(view::bad)?;
    let query = &form;
    let links = Links {
        self_href: format!("{}/exceptions", base(&row.customer_id)),
        query,
        staged: &[],
    };
    if staged.is_empty() {
        let flash = Flash::error("Nothing to save: click the arrow on a row first.");
        return Ok(redirect_with(
            &links.with(&[], &query.page),
            flash,
            state.config.secure(),
        ));
    }
    let meta = admin.meta(customer, &state);
    let mut saved = 0;
    let mut failed: Vec<Staged> = Vec::new();
    let mut why = Vec::new();
    for s in &staged {
        let done = if s.add {
            state
                .app
                .written(state.sync.add_exception(&meta, s.exception.clone()))
                .await
        } else {
            state
                .app
                .written(state.sync.remove_exception(&meta, s.exception.clone()))
                .await
        };
        match done {
            Ok(_) => saved += 1,
            Err(e) => {
                failed.push(s.clone());
                why.push(view::message(&PageError::from(e)));
            }
        }
    }
    let flash = if failed.is_empty() {
        Flash::success(format!(
            "Saved: {saved} change{} to the exception list. Syncs leave the objects on it alone.",
            if saved == 1 { "" } else { "s" }
        ))
    } else {
        // The changes not saved stay on the page, to save again.
        Flash::error(format!(
            "Saved {saved} of {} changes; not saved: {}",
            staged.len(),
            why.join("; ")
        ))
    };
    Ok(redirect_with(
        &links.with(&failed, &query.page),
        flash,
        state.config.secure(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d3o_staged_changes_round_trip_the_last_change_wins_and_bad_tokens_say_what_to_do() {
        let all = Staged::parse_all(" +u:ABC-1 , +g:g2,+a:Sales@Example.org, -u:abc-1 ,").unwrap();
        assert_eq!(
            all,
            vec![
                Staged {
                    add: true,
                    exception: Exception::Group {
                        object_id: "g2".into()
                    }
                },
                Staged {
                    add: true,
                    exception: Exception::Alias {
                        address: Address::parse_stored("sales@example.org").unwrap()
                    }
                },
                Staged {
                    add: false,
                    exception: Exception::User {
                        object_id: "abc-1".into()
                    }
                },
            ],
            "ids lower-cased, the later change of abc-1 replaces the earlier"
        );
        assert_eq!(Staged::parse_all(&Staged::join(&all)).unwrap(), all);
        assert_eq!(Staged::parse_all("").unwrap(), vec![]);
        for bad in ["u:x", "+x:1", "+u:", "+a:not an address", "+u"] {
            let e = Staged::parse_all(bad).unwrap_err();
            assert!(e.contains("discard the changes"), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MOST_STAGED).map(|i| format!("+u:{i}")).collect();
        let e = Staged::parse_all(&many.join(",")).unwrap_err();
        assert!(e.contains("at most 200"), "{e}");
    }
}
