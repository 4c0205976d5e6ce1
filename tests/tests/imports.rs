//! CSV import with review (M2, with M1, T3, U1, U6, D3.g): the service on
//! both back-ends with real databases, on files as spreadsheet programs
//! write them and malformed ones, and end to end through the real binary.

use roster_tests::process::on_both;
use std::collections::BTreeMap;

use axum::body::Bytes;
use reqwest::StatusCode;
use roster_app::imports::{
    self, CommitResult, ImportSettings, ImportStatus, ImportView, InputKind, Outcome, ReviewInput,
    RowQuery,
};
use roster_app::users::{self, Edit, NewUser};
use roster_app::AppError;
use roster_csv::{ImportOptions, ProfilePatch};
use roster_domain::{Directory, DirectoryCommand, Import, User, UserCommand, UserServices};
use roster_events::*;
use roster_projections::queries::{self, UserFilter};
use roster_store::{Batch, Clock, Loaded};
use roster_tests::backend::addr;
use roster_tests::process::enc;
use roster_tests::{both_backends, RosterProcess, TestStore};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../services/csv/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn actor() -> Actor {
    Actor::Token(TokenId(uuid::Uuid::from_u128(0xA11CE)))
}

fn settings() -> ImportSettings {
    ImportSettings::default()
}

async fn review_with(
    s: &TestStore,
    customer: CustomerId,
    bytes: impl Into<Vec<u8>>,
    settings: &ImportSettings,
) -> Result<ImportId, AppError> {
    review_read_as(s, customer, bytes, ImportOptions::default(), settings).await
}

/// A review of `bytes` read with `options` (encoding, delimiter).
async fn review_read_as(
    s: &TestStore,
    customer: CustomerId,
    bytes: impl Into<Vec<u8>>,
    options: ImportOptions,
    settings: &ImportSettings,
) -> Result<ImportId, AppError> {
    imports::review(
        &s.app(),
        &actor(),
        customer,
        ReviewInput {
            bytes: Bytes::from(bytes.into()),
            kind: InputKind::Body,
            file_name: Some("users.csv".into()),
            options,
        },
        settings,
    )
    .await
}

async fn review(s: &TestStore, customer: CustomerId, text: &str) -> ImportId {
    review_with(s, customer, text, &settings())
        .await
        .unwrap_or_else(|e| panic!("review: {} {e}", e.code()))
}

async fn view(s: &TestStore, customer: CustomerId, id: ImportId) -> ImportView {
    imports::view(
        &s.app(),
        customer,
        id,
        &RowQuery {
            page_size: Some(10_000),
            ..RowQuery::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("view: {} {e}", e.code()))
}

async fn commit_with(
    s: &TestStore,
    customer: CustomerId,
    id: ImportId,
    settings: &ImportSettings,
) -> Result<CommitResult, AppError> {
    imports::commit(&s.app(), &actor(), customer, id, settings)
        .await
        .map(|c| c.result)
}

async fn commit(s: &TestStore, customer: CustomerId, id: ImportId) -> CommitResult {
    commit_with(s, customer, id, &settings())
        .await
        .unwrap_or_else(|e| panic!("commit: {} {e}", e.code()))
}

/// Outcome and error codes of every row, by line.
fn outcomes(v: &ImportView) -> BTreeMap<u64, (Outcome, Vec<String>)> {
    v.rows
        .iter()
        .map(|r| {
            (
                r.line,
                (r.outcome, r.errors.iter().map(|e| e.code.clone()).collect()),
            )
        })
        .collect()
}

async fn add(s: &TestStore, customer: CustomerId, address: &str, first: &str, aliases: &[&str]) {
    add_from(s, customer, address, first, aliases, Source::Manual).await;
}

async fn add_from(
    s: &TestStore,
    customer: CustomerId,
    address: &str,
    first: &str,
    aliases: &[&str],
    source: Source,
) {
    users::add_user(
        &s.app(),
        s.meta(customer),
        NewUser {
            address: addr(address),
            kind: Kind::User,
            profile: Profile {
                first_name: Some(first.into()),
                ..Profile::default()
            },
            aliases: aliases.iter().map(|a| addr(a)).collect(),
        },
        source,
    )
    .await
    .unwrap_or_else(|e| panic!("add {address}: {}", e));
}

async fn user(s: &TestStore, customer: CustomerId, address: &str) -> Option<Loaded<User>> {
    let owner = s.store.db().address_owner(&addr(address)).await.unwrap()?;
    assert_eq!(owner.customer_id, customer);
    Some(s.store.load(&owner.owner.to_string()).await.unwrap())
}

/// Every event of the log.
async fn log(s: &TestStore) -> Vec<roster_store::StoredEvent> {
    s.store.read_from(0, 1_000_000).await.unwrap()
}

// M2: review classifies every row and changes nothing.
async fn m2_review_classifies_every_row_and_changes_nothing(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add(&s, c, "ann@acme.example", "Ann", &["a@acme.example"]).await;
    add(&s, c, "bob@acme.example", "Bob", &[]).await;
    let head = s.store.head_position().await.unwrap();
    let id = review(
        &s,
        c,
        "email,first_name,last_name,aliases\r\n\
         Ann@ACME.example,Ann,Lee,a@acme.example\r\n\
         bob@acme.example,Bob,,\r\n\
         carl@acme.example,Carl,Wade,\"c@acme.example; carl.wade@acme.example\"\r\n\
         not an address,X,,\r\n\
         dora@elsewhere.example,Dora,,\r\n",
    )
    .await;
    assert_eq!(
        s.store.head_position().await.unwrap(),
        head,
        "a review appends nothing"
    );
    let v = view(&s, c, id).await;
    assert_eq!(v.status, ImportStatus::Reviewed);
    let o = outcomes(&v);
    assert_eq!(o[&2], (Outcome::Update, vec![]));
    assert_eq!(o[&3], (Outcome::Unchanged, vec![]));
    assert_eq!(o[&4], (Outcome::Add, vec![]));
    assert_eq!(o[&5], (Outcome::Error, vec!["invalid_address".to_string()]));
    assert_eq!(
        o[&6],
        (Outcome::Error, vec!["unmanaged_domain".to_string()])
    );
    assert_eq!(
        (
            v.totals.rows,
            v.totals.add,
            v.totals.update,
            v.totals.unchanged,
            v.totals.error
        ),
        (5, 1, 1, 1, 2)
    );
    let ann = &v.rows[0];
    assert_eq!(ann.address, "ann@acme.example");
    assert_eq!(ann.changes.len(), 1, "{:?}", ann.changes);
    assert_eq!(ann.changes[0].field, "last_name");
    assert_eq!(ann.changes[0].after.as_deref(), Some("Lee"));
    let carl = &v.rows[2];
    assert_eq!(
        carl.aliases_added,
        vec!["c@acme.example", "carl.wade@acme.example"]
    );
    let bad = &v.rows[4];
    assert_eq!(bad.errors[0].column.as_deref(), Some("email"));
    assert_eq!(
        (
            bad.changes[0].field.as_str(),
            bad.changes[0].after.as_deref()
        ),
        ("first_name", Some("Dora")),
        "an error row shows what it would have set"
    );
    assert!(
        bad.errors[0].message.contains("elsewhere.example")
            && bad.errors[0].message.contains("managed"),
        "{}",
        bad.errors[0].message
    );
    assert_eq!(v.seats.free, 8);
    assert_eq!(v.file.encoding, "utf-8");
    assert_eq!(v.file.delimiter, "comma");
    // The rows page and filter.
    let page = imports::view(
        &s.app(),
        c,
        id,
        &RowQuery {
            page_size: Some(2),
            ..RowQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.rows.len(), 2);
    let rest = imports::view(
        &s.app(),
        c,
        id,
        &RowQuery {
            page: page.next_page.clone().map(String::from),
            page_size: Some(10),
            ..RowQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        rest.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert!(rest.next_page.is_none());
    // One page-token style across the API (E3): the rows' token is the shared
    // keyset cursor, and a bare row number is refused, not served.
    let token = page.next_page.clone().unwrap();
    assert!(roster_projections::Cursor::read::<1>(token.as_str()).is_ok());
    let bare = imports::view(
        &s.app(),
        c,
        id,
        &RowQuery {
            page: Some("1".into()),
            ..RowQuery::default()
        },
    )
    .await
    .unwrap_err();
    assert!(format!("{bare:?}").contains("not a token"), "{bare:?}");
    let errors = imports::view(
        &s.app(),
        c,
        id,
        &RowQuery {
            outcome: Some(Outcome::Error),
            ..RowQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        errors.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![5, 6]
    );
    // T1: another customer cannot see it.
    let other = s.customer(10, &["other.example"]).await;
    let e = imports::view(&s.app(), other, id, &RowQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, AppError::NotFound { .. }), "{e:?}");
}

// M2 save: exactly the reviewed plan, source csv, correlated by the import id.
async fn m2_commit_applies_exactly_the_plan_with_source_csv(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add(
        &s,
        c,
        "ann@acme.example",
        "Ann",
        &["a@acme.example", "old@acme.example"],
    )
    .await;
    add(&s, c, "bob@acme.example", "Bob", &[]).await;
    let id = review(
        &s,
        c,
        "email,first_name,last_name,aliases,notes\n\
         ann@acme.example,Anne,Lee,\"a@acme.example, new@acme.example\",\"two\nlines\"\n\
         bob@acme.example,Bob,,,\n\
         carl@acme.example,Carl,Wade,c@acme.example,\n\
         x@nowhere.example,X,,,\n",
    )
    .await;
    let before = log(&s).await.len();
    let result = commit(&s, c, id).await;
    assert_eq!(
        (
            result.added,
            result.updated,
            result.unchanged,
            result.rejected,
            result.skipped
        ),
        (1, 1, 1, 1, 0)
    );
    let events = log(&s).await;
    let new = &events[before..];
    let correlation = CorrelationId::from(id).to_string();
    for e in new {
        let metadata = e.metadata.value().unwrap();
        assert_eq!(metadata["correlation_id"], correlation.as_str(), "{e:?}");
        assert_eq!(metadata["actor"], actor().to_string().as_str());
    }
    let types: Vec<&str> = new.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "AliasUnmapped",
            "ProfileUpdated",
            "AliasMapped",
            "UserAdded",
            "ImportChunkCommitted",
            "ImportCommitted"
        ],
        "bob is unchanged: no event"
    );
    let carl = user(&s, c, "carl@acme.example").await.unwrap();
    assert_eq!(carl.state.source, Some(Source::Csv));
    assert_eq!(carl.state.profile.last_name.as_deref(), Some("Wade"));
    let ann = user(&s, c, "ann@acme.example").await.unwrap();
    assert_eq!(
        ann.state.source,
        Some(Source::Manual),
        "an update keeps the source"
    );
    assert_eq!(ann.state.profile.first_name.as_deref(), Some("Anne"));
    assert_eq!(ann.state.profile.notes.as_deref(), Some("two\nlines"));
    assert_eq!(
        ann.state
            .aliases
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec!["a@acme.example", "new@acme.example"],
        "a present aliases column is the whole new set"
    );
    assert!(user(&s, c, "old@acme.example").await.is_none());
    // The projections show it.
    s.project().await;
    let row = queries::user_by_address(&s.store, c, "carl@acme.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.source, Source::Csv);
    let v = view(&s, c, id).await;
    assert_eq!(v.status, ImportStatus::Committed);
    assert_eq!(v.result.as_ref().unwrap(), &result);
}

// M2: committing twice does not apply twice.
async fn m2_a_second_commit_answers_the_first_result_and_applies_nothing(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    let id = review(&s, c, "email\nann@acme.example\nbob@acme.example\n").await;
    let first = commit(&s, c, id).await;
    let head = s.store.head_position().await.unwrap();
    s.clock.advance(chrono::Duration::hours(48));
    let second = commit(&s, c, id).await;
    assert_eq!(first, second);
    assert_eq!(s.store.head_position().await.unwrap(), head);
    // Concurrent commits of one review apply it once.
    let id = review(&s, c, "email\ncarl@acme.example\ndora@acme.example\n").await;
    let app = s.app();
    let small = ImportSettings {
        chunk_rows: 1,
        ..settings()
    };
    let who = actor();
    let runs = (0..4).map(|_| imports::commit(&app, &who, c, id, &small));
    let results = futures::future::join_all(runs).await;
    let ok: Vec<_> = results.into_iter().filter_map(Result::ok).collect();
    assert!(!ok.is_empty());
    let adds = log(&s)
        .await
        .iter()
        .filter(|e| e.event_type == "UserAdded")
        .count();
    assert_eq!(adds, 4, "ann, bob, carl and dora, each once");
    // A review without changes commits too (and only once).
    let id = review(&s, c, "email\nann@acme.example\n").await;
    let r = commit(&s, c, id).await;
    assert_eq!((r.unchanged, r.chunks), (1, 0));
    let head = s.store.head_position().await.unwrap();
    assert_eq!(commit(&s, c, id).await, r);
    assert_eq!(s.store.head_position().await.unwrap(), head);
}

// M2: "if the users changed since the review, it asks for a new review".
async fn m2_a_stale_review_is_refused_and_nothing_is_applied(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add(&s, c, "ann@acme.example", "Ann", &[]).await;
    let text = "email,first_name\nann@acme.example,Anne\nbob@acme.example,Bob\n";
    let id = review(&s, c, text).await;
    users::edit_user(
        &s.app(),
        s.meta(c),
        addr("ann@acme.example"),
        Edit {
            profile: ProfilePatch {
                last_name: Some(Some("Lee".into())),
                ..ProfilePatch::default()
            },
            ..Edit::default()
        },
    )
    .await
    .unwrap();
    let head = s.store.head_position().await.unwrap();
    let e = commit_with(&s, c, id, &settings()).await.unwrap_err();
    assert!(
        matches!(
            e,
            AppError::Conflict {
                code: "review_stale",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("ann@acme.example"), "{}", e);
    assert!(e.to_string().contains("review the file again"), "{}", e);
    assert_eq!(
        s.store.head_position().await.unwrap(),
        head,
        "nothing applied"
    );
    assert!(user(&s, c, "bob@acme.example").await.is_none());
    // A new review of the same file commits.
    let id = review(&s, c, text).await;
    commit(&s, c, id).await;
    assert_eq!(
        user(&s, c, "ann@acme.example")
            .await
            .unwrap()
            .state
            .profile
            .first_name
            .as_deref(),
        Some("Anne")
    );

    // An address the review planned to add was taken since.
    let id = review(&s, c, "email\ncarl@acme.example\ndora@acme.example\n").await;
    add(&s, c, "dora@acme.example", "Dora", &[]).await;
    let head = s.store.head_position().await.unwrap();
    let e = commit_with(&s, c, id, &settings()).await.unwrap_err();
    assert_eq!(e.code(), "review_stale");
    assert!(e.to_string().contains("dora@acme.example"), "{}", e);
    assert_eq!(s.store.head_position().await.unwrap(), head);
    assert!(user(&s, c, "carl@acme.example").await.is_none());

    // A review expires.
    let id = review(&s, c, "email\neve@acme.example\n").await;
    s.clock.advance(chrono::Duration::hours(25));
    let e = commit_with(&s, c, id, &settings()).await.unwrap_err();
    assert!(
        matches!(
            e,
            AppError::Gone {
                code: "review_expired",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(view(&s, c, id).await.status, ImportStatus::Expired);
}

// T3: additions beyond the free seats are errors on the rows past the limit.
async fn t3_additions_beyond_the_free_seats_are_refused_in_file_order(s: TestStore) {
    let c = s.customer(3, &["acme.example"]).await;
    add(&s, c, "ann@acme.example", "Ann", &[]).await;
    let id = review(
        &s,
        c,
        "email\nann@acme.example\nb@acme.example\nc@acme.example\nd@acme.example\ne@acme.example\n",
    )
    .await;
    let v = view(&s, c, id).await;
    let o = outcomes(&v);
    assert_eq!(o[&2].0, Outcome::Unchanged);
    assert_eq!(o[&3].0, Outcome::Add);
    assert_eq!(o[&4].0, Outcome::Add);
    assert_eq!(o[&5], (Outcome::Error, vec!["over_seat_limit".to_string()]));
    assert_eq!(o[&6], (Outcome::Error, vec!["over_seat_limit".to_string()]));
    let msg = &v.rows[3].errors[0].message;
    assert!(
        msg.contains("3 seats") && msg.contains("raise the seat limit"),
        "{msg}"
    );
    // A concurrent addition takes a seat: the plan no longer fits.
    add(&s, c, "x@acme.example", "X", &[]).await;
    let e = commit_with(&s, c, id, &settings()).await.unwrap_err();
    assert_eq!(e.code(), "review_stale");
    assert!(e.to_string().contains("seats"), "{}", e);
    let id = review(&s, c, "email\nb@acme.example\nc@acme.example\n").await;
    let r = commit(&s, c, id).await;
    assert_eq!((r.added, r.rejected), (1, 1));
    assert_eq!(s.store.db().seats(c).await.unwrap().used, 3);
}

// U1: duplicates in the file, addresses owned by others, colliding aliases.
async fn u1_review_reports_every_address_conflict(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    let other = s.customer(10, &["other.example"]).await;
    add(
        &s,
        c,
        "ann@acme.example",
        "Ann",
        &["a@acme.example", "a2@acme.example"],
    )
    .await;
    add(&s, c, "bob@acme.example", "Bob", &[]).await;
    add(&s, other, "zed@other.example", "Zed", &[]).await;
    let id = review(
        &s,
        c,
        "email,aliases\n\
         carl@acme.example,a@acme.example\n\
         dora@acme.example,bob@acme.example\n\
         eve@acme.example,\n\
         EVE@acme.example,\n\
         a2@acme.example,\n\
         fred@acme.example,zed@other.example\n",
    )
    .await;
    let v = view(&s, c, id).await;
    let o = outcomes(&v);
    assert_eq!(o[&2], (Outcome::Error, vec!["address_taken".to_string()]));
    assert!(v.rows[0].errors[0]
        .message
        .contains("alias of ann@acme.example"));
    assert_eq!(v.rows[0].errors[0].column.as_deref(), Some("aliases"));
    assert_eq!(o[&3], (Outcome::Error, vec!["address_taken".to_string()]));
    assert!(v.rows[1].errors[0]
        .message
        .contains("address of another user (bob@acme.example)"));
    assert_eq!(o[&4].0, Outcome::Add, "the first line keeps the address");
    assert_eq!(
        o[&5],
        (Outcome::Error, vec!["duplicate_address".to_string()])
    );
    assert!(
        v.rows[3].errors[0].message.contains("line 4"),
        "both lines named: {}",
        v.rows[3].errors[0].message
    );
    assert_eq!(o[&6], (Outcome::Error, vec!["address_taken".to_string()]));
    assert!(v.rows[4].errors[0]
        .message
        .contains("a2@acme.example is an alias of ann@acme.example"));
    assert_eq!(v.rows[4].errors[0].column.as_deref(), Some("email"));
    assert_eq!(
        o[&7],
        (Outcome::Error, vec!["unmanaged_domain".to_string()])
    );
    assert_eq!(v.rows[5].errors[0].column.as_deref(), Some("aliases"));
    // Aliases colliding inside the file: with another row's alias, and
    // with another row's address; both lines are named.
    let id = review(
        &s,
        c,
        "email,aliases\n\
         hal@acme.example,team@acme.example\n\
         ivy@acme.example,team@acme.example\n\
         jan@acme.example,kim@acme.example\n\
         kim@acme.example,\n",
    )
    .await;
    let v = view(&s, c, id).await;
    let o = outcomes(&v);
    assert_eq!(o[&2].0, Outcome::Add, "the first line keeps the alias");
    assert_eq!(
        o[&3],
        (Outcome::Error, vec!["duplicate_address".to_string()])
    );
    assert!(
        v.rows[1].errors[0].message.contains("line 2"),
        "{}",
        v.rows[1].errors[0].message
    );
    assert_eq!(o[&4].0, Outcome::Add);
    assert_eq!(
        o[&5],
        (Outcome::Error, vec!["duplicate_address".to_string()])
    );
    assert!(
        v.rows[3].errors[0].message.contains("line 4"),
        "{}",
        v.rows[3].errors[0].message
    );
    // Too long fields are reported by column.
    let long = "x".repeat(300);
    let id = review(
        &s,
        c,
        &format!("email,last_name\ngil@acme.example,{long}\n"),
    )
    .await;
    let v = view(&s, c, id).await;
    assert_eq!(v.rows[0].errors[0].code, "too_long");
    assert_eq!(v.rows[0].errors[0].column.as_deref(), Some("last_name"));
}

// U1: an alias can move from one user to another within one file, even
// when the two rows are far apart (they are committed in one chunk).
async fn u1_an_alias_moves_between_users_of_one_file(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add(
        &s,
        c,
        "ann@acme.example",
        "Ann",
        &["shared@acme.example", "team@acme.example"],
    )
    .await;
    add(&s, c, "bob@acme.example", "Bob", &[]).await;
    let text = "email,aliases\n\
         bob@acme.example,shared@acme.example\n\
         x1@acme.example,\n\
         x2@acme.example,\n\
         team@acme.example,\n\
         ann@acme.example,\n";
    let id = review(&s, c, text).await;
    let v = view(&s, c, id).await;
    let o = outcomes(&v);
    assert_eq!(o[&2].0, Outcome::Update);
    assert_eq!(
        o[&5].0,
        Outcome::Add,
        "an alias released in the file becomes a user"
    );
    assert_eq!(o[&6].0, Outcome::Update);
    let small = ImportSettings {
        chunk_rows: 1,
        ..settings()
    };
    // Chunks of one row: the rows that hand addresses over still share one.
    let id = review_with(&s, c, text, &small).await.unwrap();
    assert_eq!(view(&s, c, id).await.progress.chunks, 3);
    let r = commit_with(&s, c, id, &small).await.unwrap();
    assert_eq!((r.added, r.updated), (3, 2));
    let bob = user(&s, c, "bob@acme.example").await.unwrap();
    assert!(bob.state.aliases.contains(&addr("shared@acme.example")));
    let team = user(&s, c, "team@acme.example").await.unwrap();
    assert_eq!(team.state.source, Some(Source::Csv));
    assert!(user(&s, c, "ann@acme.example")
        .await
        .unwrap()
        .state
        .aliases
        .is_empty());
}

// U6: an import of a deleted user's address brings the same user back.
async fn u6_an_import_brings_a_deleted_user_back(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add(&s, c, "ann@acme.example", "Ann", &[]).await;
    let earlier = user(&s, c, "ann@acme.example").await.unwrap().id;
    let at = s.clock.now();
    users::user_command(&s.app(), s.meta(c), &addr("ann@acme.example"), || {
        UserCommand::Delete {
            reason: DeletionReason::Manual,
            at,
        }
    })
    .await
    .unwrap();
    let id = review(&s, c, "email,first_name\nann@acme.example,Ann\n").await;
    let v = view(&s, c, id).await;
    assert_eq!(v.rows[0].outcome, Outcome::Add);
    assert!(v.rows[0].returning);
    assert_eq!(
        v.rows[0].user_id.map(|u| u.to_string()),
        Some(earlier.clone())
    );
    commit(&s, c, id).await;
    let back = user(&s, c, "ann@acme.example").await.unwrap();
    assert_eq!(back.id, earlier);
    assert_eq!(back.state.source, Some(Source::Csv));
    let last = log(&s)
        .await
        .into_iter()
        .rfind(|e| e.aggregate_id == earlier)
        .unwrap();
    assert_eq!(last.event_type, "UserReturned");
}

// D3.g / D3.a: while directory sync is on, rows that would change a
// directory user are reported, not applied.
async fn d3g_rows_for_directory_users_are_reported_while_sync_is_on(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add_from(&s, c, "dir@acme.example", "Dir", &[], Source::Ldap).await;
    add_from(&s, c, "same@acme.example", "Same", &[], Source::Ldap).await;
    add(&s, c, "man@acme.example", "Man", &[]).await;
    enable_directory(&s.store, c).await;
    let id = review(
        &s,
        c,
        "email,first_name\ndir@acme.example,Changed\nsame@acme.example,Same\nman@acme.example,Changed\n",
    )
    .await;
    let v = view(&s, c, id).await;
    assert_eq!(v.directory_sync, Some(DirectoryKind::Ldap));
    let o = outcomes(&v);
    assert_eq!(
        o[&2],
        (Outcome::Error, vec!["directory_managed".to_string()])
    );
    assert!(v.rows[0].errors[0]
        .message
        .contains("change it in the directory"));
    assert_eq!(v.rows[0].changes[0].after.as_deref(), Some("Changed"));
    assert_eq!(o[&3].0, Outcome::Unchanged);
    assert_eq!(o[&4].0, Outcome::Update);
    let r = commit(&s, c, id).await;
    assert_eq!((r.updated, r.rejected), (1, 1));
    let dir = user(&s, c, "dir@acme.example").await.unwrap();
    assert_eq!(dir.state.profile.first_name.as_deref(), Some("Dir"));
    // Enabling sync after a review makes the review stale.
    let id = review(&s, c, "email,first_name\nman@acme.example,Again\n").await;
    let mut d: Loaded<Directory> = s.store.load(&c.to_string()).await.unwrap();
    let mut batch = Batch::new();
    batch
        .execute(&mut d, DirectoryCommand::Disable, &(), &s.meta(c))
        .await
        .unwrap();
    s.store.commit(batch).await.unwrap();
    let e = commit_with(&s, c, id, &settings()).await.unwrap_err();
    assert_eq!(e.code(), "review_stale");
}

/// Configures and enables an LDAP directory for the customer, through the
/// store (no LDAP server needed for the import's checks).
pub async fn enable_directory(store: &roster_store::Store, c: CustomerId) {
    let config = DirectoryConfig {
        connection: Connection::Ldap(LdapSettings {
            host: "dc1.acme.example".into(),
            port: 636,
            ssl: true,
            starttls: false,
            tls: TlsSettings::default(),
            bind_user: "svc@acme.example".into(),
            base_dn: "DC=acme,DC=example".into(),
            filter: None,
            include_disabled: false,
            include_public_folders: false,
            preset: LdapPreset::ActiveDirectory,
            attributes: AttributeMap::default(),
            timeout_secs: 30,
            full_sync_hours: None,
        }),
        poll_interval: PollInterval::Hours6,
        delete_after: DeleteAfter::Days7,
        guard: GuardSettings::default(),
    };
    let meta = EventMeta {
        customer_id: c,
        actor: Actor::System("test".into()),
        correlation_id: CorrelationId::new(),
        time: chrono::Utc::now(),
    };
    let mut d: Loaded<Directory> = store.load(&c.to_string()).await.unwrap();
    let mut batch = Batch::new();
    batch
        .execute(
            &mut d,
            DirectoryCommand::Configure {
                config,
                secret_changed: false,
            },
            &(),
            &meta,
        )
        .await
        .unwrap();
    batch
        .execute(
            &mut d,
            DirectoryCommand::Enable {
                kind: DirectoryKind::Ldap,
                confirm_switch: false,
            },
            &(),
            &meta,
        )
        .await
        .unwrap();
    store.commit(batch).await.unwrap();
}

// M2: a crash in the middle of a commit leaves a state from which the same
// commit completes, with nothing applied twice.
async fn m2_an_interrupted_commit_completes_without_applying_anything_twice(s: TestStore) {
    let c = s.customer(20, &["acme.example"]).await;
    add(&s, c, "ann@acme.example", "Ann", &[]).await;
    let mut text = String::from("email,first_name\nann@acme.example,Anne\n");
    for i in 0..6 {
        text.push_str(&format!("u{i}@acme.example,User {i}\n"));
    }
    let small = ImportSettings {
        chunk_rows: 2,
        ..settings()
    };
    let id = review_with(&s, c, text, &small).await.unwrap();
    assert_eq!(view(&s, c, id).await.progress.chunks, 4);
    for crash_after in [0, 2] {
        let failing = ImportSettings {
            fail_after_chunk: Some(crash_after),
            ..small.clone()
        };
        let e = commit_with(&s, c, id, &failing).await.unwrap_err();
        assert_eq!(e.code(), "internal");
        let import: Loaded<Import> = s.store.load(&id.to_string()).await.unwrap();
        assert_eq!(import.state.committed_chunks, crash_after + 1);
        assert!(import.state.completed.is_none());
        let v = view(&s, c, id).await;
        assert_eq!(v.status, ImportStatus::Committing);
        assert_eq!(v.progress.committed_chunks, crash_after + 1);
        // A change to a user of a committed chunk does not block the rest.
        users::edit_user(
            &s.app(),
            s.meta(c),
            addr("ann@acme.example"),
            Edit {
                profile: ProfilePatch {
                    company: Some(Some(format!("Co {crash_after}"))),
                    ..ProfilePatch::default()
                },
                ..Edit::default()
            },
        )
        .await
        .unwrap();
    }
    // Even after the review's expiry, an interrupted commit can complete.
    s.clock.advance(chrono::Duration::hours(30));
    let r = commit_with(&s, c, id, &small).await.unwrap();
    assert_eq!((r.added, r.updated, r.skipped, r.chunks), (6, 1, 0, 4));
    let events = log(&s).await;
    for i in 0..6 {
        let u = user(&s, c, &format!("u{i}@acme.example")).await.unwrap();
        let n = events.iter().filter(|e| e.aggregate_id == u.id).count();
        assert_eq!(n, 1, "u{i} added exactly once");
    }
    let chunks = events
        .iter()
        .filter(|e| e.event_type == "ImportChunkCommitted")
        .count();
    assert_eq!(chunks, 4);
    let head = s.store.head_position().await.unwrap();
    assert_eq!(commit_with(&s, c, id, &small).await.unwrap(), r);
    assert_eq!(s.store.head_position().await.unwrap(), head);
}

// M2: after the first chunk, a user changed during the commit is skipped
// and reported, never overwritten.
async fn m2_a_user_changed_during_a_commit_is_skipped_and_reported(s: TestStore) {
    let c = s.customer(20, &["acme.example"]).await;
    add(&s, c, "ann@acme.example", "Ann", &[]).await;
    add(&s, c, "bob@acme.example", "Bob", &[]).await;
    let small = ImportSettings {
        chunk_rows: 1,
        ..settings()
    };
    let id = review_with(
        &s,
        c,
        "email,first_name\nann@acme.example,Anne\nbob@acme.example,Bobby\n",
        &small,
    )
    .await
    .unwrap();
    let failing = ImportSettings {
        fail_after_chunk: Some(0),
        ..small.clone()
    };
    commit_with(&s, c, id, &failing).await.unwrap_err();
    users::edit_user(
        &s.app(),
        s.meta(c),
        addr("bob@acme.example"),
        Edit {
            profile: ProfilePatch {
                first_name: Some(Some("Robert".into())),
                ..ProfilePatch::default()
            },
            ..Edit::default()
        },
    )
    .await
    .unwrap();
    let r = commit_with(&s, c, id, &small).await.unwrap();
    assert_eq!((r.updated, r.skipped), (1, 1));
    assert_eq!(r.skipped_rows[0].address, "bob@acme.example");
    assert_eq!(r.skipped_rows[0].code, "changed_since_review");
    let bob = user(&s, c, "bob@acme.example").await.unwrap();
    assert_eq!(bob.state.profile.first_name.as_deref(), Some("Robert"));
}

// M2, issue 17: each chunk is read and staged while the one before it is
// appended. Users edited all through a commit of one-row chunks: a row is
// applied only to its user as reviewed (its event directly follows the
// reviewed version), else it is skipped as changed, never applied over an
// edit made after it was staged.
async fn m2_a_chunk_staged_ahead_is_never_applied_over_a_later_edit(s: TestStore) {
    let c = s.customer(100, &["acme.example"]).await;
    let n = 40;
    let address = |i: usize| format!("u{i:02}@acme.example");
    let mut csv = String::from("email,first_name\n");
    for i in 0..n {
        add(&s, c, &address(i), "Old", &[]).await;
        csv.push_str(&format!("{},New{i}\n", address(i)));
    }
    let small = ImportSettings {
        chunk_rows: 1,
        ..settings()
    };
    let id = review_with(&s, c, csv, &small).await.unwrap();
    let mut reviewed = BTreeMap::new();
    for i in 0..n {
        let u = user(&s, c, &address(i)).await.unwrap();
        reviewed.insert(u.id.clone(), u.version);
    }
    // The first chunk applied (an edit before it makes the review stale,
    // which another test proves); the edits start once it is.
    let first = ImportSettings {
        fail_after_chunk: Some(0),
        ..small.clone()
    };
    commit_with(&s, c, id, &first).await.unwrap_err();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editing = {
        let (app, meta, done) = (s.app(), s.meta(c), done.clone());
        tokio::spawn(async move {
            let mut edits = 0;
            // From the last rows backwards, so that edits land on rows
            // still ahead of the commit; at least a few edits.
            for i in (0..n).rev().cycle() {
                if done.load(std::sync::atomic::Ordering::Relaxed) && edits >= 5 {
                    break;
                }
                let edit = Edit {
                    profile: ProfilePatch {
                        last_name: Some(Some(format!("Edit{edits}"))),
                        ..ProfilePatch::default()
                    },
                    ..Edit::default()
                };
                let edited = users::edit_user(&app, meta.clone(), addr(&address(i)), edit).await;
                if let Err(e) = edited {
                    panic!("edit {}: {e}", address(i));
                }
                edits += 1;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            edits
        })
    };
    let r = commit_with(&s, c, id, &small).await.unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let edits = editing.await.unwrap();
    assert_eq!(r.updated + r.skipped, n as u64, "{r:?}");
    assert!(
        r.skipped_rows
            .iter()
            .all(|k| k.code == "changed_since_review"),
        "{r:?}"
    );
    let correlation = CorrelationId::from(id).to_string();
    let mut applied = 0;
    for e in log(&s).await {
        let Some(version) = reviewed.get(&e.aggregate_id) else {
            continue;
        };
        if e.metadata.value().unwrap()["correlation_id"] == correlation.as_str() {
            applied += 1;
            assert_eq!(
                e.sequence,
                version + 1,
                "an import row was applied over a change made after the review: {e:?} ({edits} edits)"
            );
        }
    }
    assert_eq!(applied, r.updated, "{r:?}");
}

// M2: files as spreadsheet programs write them.
async fn m2_spreadsheet_files_review_and_commit(s: TestStore) {
    let c = s.customer(50, &["example.com", "example.de"]).await;
    // "Unicode text" from Excel: UTF-16 LE with BOM, tab-separated.
    let id = review_with(
        &s,
        c,
        fixture("m2_unicode_text_utf16le_tab.txt"),
        &settings(),
    )
    .await
    .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(
        (
            v.file.encoding.as_str(),
            v.file.delimiter.as_str(),
            v.file.bom
        ),
        ("utf-16le", "tab", true)
    );
    assert_eq!(v.totals.add, 3, "{:?}", outcomes(&v));
    commit(&s, c, id).await;
    let rene = user(&s, c, "rene.dubois@example.com").await.unwrap();
    assert_eq!(rene.state.profile.first_name.as_deref(), Some("René"));
    assert_eq!(
        rene.state.profile.notes.as_deref(),
        Some("Prefers \"René\" with the accent\nLyon office")
    );
    assert_eq!(
        user(&s, c, "zoe.ng@example.com")
            .await
            .unwrap()
            .state
            .profile
            .company
            .as_deref(),
        Some("Acme, Inc.")
    );
    // Excel in Europe: UTF-8 with BOM, semicolon-separated.
    let id = review_with(
        &s,
        c,
        fixture("m2_excel_eu_utf8_bom_semicolon.csv"),
        &settings(),
    )
    .await
    .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(
        (
            v.file.encoding.as_str(),
            v.file.delimiter.as_str(),
            v.file.bom
        ),
        ("utf-8", "semicolon", true)
    );
    assert_eq!(v.totals.add, 3, "{:?}", outcomes(&v));
    commit(&s, c, id).await;
    let klaus = user(&s, c, "klaus.mueller@example.de").await.unwrap();
    assert_eq!(klaus.state.profile.last_name.as_deref(), Some("Müller"));
    assert_eq!(klaus.state.aliases.len(), 2);
    assert_eq!(
        klaus.state.profile.department.as_deref(),
        Some("Finance, Controlling")
    );
    let anna = user(&s, c, "anna.schaefer@example.de").await.unwrap();
    assert_eq!(
        anna.state.profile.mobile.as_deref(),
        Some("+49 151 7654321")
    );
    // Excel-quoted multi-line notes, blank lines, a duplicate at the end.
    let id = review_with(&s, c, fixture("m2_excel_multiline_notes.csv"), &settings())
        .await
        .unwrap();
    let v = view(&s, c, id).await;
    let o = outcomes(&v);
    assert_eq!(o.keys().copied().collect::<Vec<_>>(), vec![2, 5, 8, 11, 12]);
    assert_eq!(
        o[&12],
        (Outcome::Error, vec!["duplicate_address".to_string()])
    );
    assert!(v.rows[4].errors[0].message.contains("line 2"));
    let r = commit(&s, c, id).await;
    assert_eq!((r.added, r.rejected), (4, 1));
    let anna = user(&s, c, "anna@example.com").await.unwrap();
    assert_eq!(
        anna.state.profile.notes.as_deref(),
        Some("First line\nsecond line, with a comma\nthird line with \"quotes\"")
    );
    // Windows-1252 from Excel's plain CSV: reviewed as updates and additions.
    let id = review_with(
        &s,
        c,
        fixture("m2_excel_windows1252_comma.csv"),
        &settings(),
    )
    .await
    .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(
        (
            v.file.encoding.as_str(),
            v.file.delimiter.as_str(),
            v.file.bom
        ),
        ("windows-1252", "comma", false)
    );
    let o = outcomes(&v);
    assert_eq!(
        (o[&2].0, o[&3].0, o[&4].0),
        (Outcome::Update, Outcome::Update, Outcome::Add),
        "{o:?}"
    );
    let r = commit(&s, c, id).await;
    assert_eq!((r.added, r.updated, r.rejected), (1, 2, 0));
    let rene = user(&s, c, "rene.dubois@example.com").await.unwrap();
    assert_eq!(rene.state.profile.company.as_deref(), Some("Café Müller"));
    assert_eq!(rene.state.profile.notes.as_deref(), Some("Budget 500 €"));
    let juergen = user(&s, c, "juergen.weiss@example.com").await.unwrap();
    assert_eq!(
        juergen.state.profile.company.as_deref(),
        Some("Weiß, Söhne & Co.")
    );
    assert_eq!(juergen.state.profile.notes, None, "an empty cell clears");
    let zoe = user(&s, c, "zoe.nunez@example.com").await.unwrap();
    assert_eq!(zoe.state.profile.last_name.as_deref(), Some("Núñez"));
    assert_eq!(zoe.state.profile.notes.as_deref(), Some("Says \"hi\""));

    // "Unicode text" big-endian (UTF-16 BE with BOM), LDAP attribute names.
    let id = review_with(
        &s,
        c,
        fixture("m2_unicode_text_utf16be_tab.txt"),
        &settings(),
    )
    .await
    .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(
        (
            v.file.encoding.as_str(),
            v.file.delimiter.as_str(),
            v.file.bom
        ),
        ("utf-16be", "tab", true)
    );
    assert_eq!(v.totals.add, 1, "{:?}", outcomes(&v));
    commit(&s, c, id).await;
    let sven = user(&s, c, "sven.aasen@example.com").await.unwrap();
    assert_eq!(sven.state.profile.last_name.as_deref(), Some("Åsen"));

    // An Active Directory export: proxyAddresses (SMTP: is the primary,
    // smtp: aliases, X500:/SIP: skipped), info as notes, an unknown column.
    let id = review_with(
        &s,
        c,
        fixture("m2_ad_export_proxyaddresses.csv"),
        &settings(),
    )
    .await
    .unwrap();
    let v = view(&s, c, id).await;
    assert!(
        v.file.warnings.iter().any(|w| w.message.contains("title")),
        "{:?}",
        v.file.warnings
    );
    let o = outcomes(&v);
    // john@example.net is an alias in a domain this customer does not manage.
    assert_eq!(
        o[&2],
        (Outcome::Error, vec!["unmanaged_domain".to_string()])
    );
    assert_eq!(o[&4].0, Outcome::Add, "{o:?}");
    assert_eq!(
        v.rows[0].aliases_added,
        vec!["jdoe@example.com", "john@example.net"],
        "X500 and SIP entries are skipped"
    );
    commit(&s, c, id).await;
    let mary = user(&s, c, "mary.major@example.com").await.unwrap();
    assert!(mary.state.aliases.is_empty(), "SMTP: of the primary itself");

    // A header without rows: an empty review that commits to nothing.
    let id = review_with(&s, c, fixture("m2_header_only.csv"), &settings())
        .await
        .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(v.totals.rows, 0);
    let head = s.store.head_position().await.unwrap();
    let r = commit(&s, c, id).await;
    assert_eq!((r.added, r.updated, r.chunks), (0, 0, 0));
    let events = log(&s).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.position > head)
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        vec!["ImportCommitted"],
        "only the import's own record"
    );

    // An encoding named by the request wins over detection: bytes that are
    // valid UTF-8 read as Windows-1252 when the request says so.
    let named = imports::review(
        &s.app(),
        &actor(),
        c,
        ReviewInput {
            bytes: Bytes::from_static(b"email,first_name\r\nnamed@example.com,Ren\xC3\xA9\r\n"),
            kind: InputKind::Body,
            file_name: None,
            options: ImportOptions {
                encoding: roster_csv::EncodingChoice::Windows1252,
                ..ImportOptions::default()
            },
        },
        &settings(),
    )
    .await
    .unwrap();
    let v = view(&s, c, named).await;
    assert_eq!(v.file.encoding, "windows-1252");
    assert_eq!(v.rows[0].changes[0].after.as_deref(), Some("RenÃ©"));
    // A named encoding the bytes do not fit is a file error, not U+FFFD.
    let e = imports::review(
        &s.app(),
        &actor(),
        c,
        ReviewInput {
            bytes: Bytes::from_static(b"email,first_name\r\nbad@example.com,Ren\xE9\r\n"),
            kind: InputKind::Body,
            file_name: None,
            options: ImportOptions {
                encoding: roster_csv::EncodingChoice::Utf8,
                ..ImportOptions::default()
            },
        },
        &settings(),
    )
    .await
    .unwrap_err();
    assert_eq!(http_status(&e), 400);
    assert!(e.to_string().contains("line 2"), "{}", e);
}

// M2: a file that is not CSV, empty, without an address column, or over
// the size limit gets a clear error; nothing is stored.
async fn m2_malformed_files_get_clear_errors(s: TestStore) {
    let c = s.customer(10, &["example.com"]).await;
    for (file, status, code, needle) in [
        ("m2_malformed_empty.csv", 400, "csv_empty", "empty"),
        ("m2_malformed_binary_junk.bin", 400, "csv_binary", "not CSV"),
        (
            "m2_malformed_xlsx_workbook.xlsx",
            400,
            "csv_binary",
            "save it as",
        ),
        (
            "m2_malformed_no_address_column.csv",
            400,
            "csv_no_address_column",
            "no address column",
        ),
        (
            "m2_malformed_single_column_not_csv.txt",
            400,
            "csv_not_csv",
            "does not look like CSV",
        ),
        (
            "m2_malformed_unterminated_quote.csv",
            400,
            "csv_unterminated_quote",
            "line 3",
        ),
        (
            "m2_malformed_headerless_address_list.csv",
            400,
            "csv_missing_header",
            "header",
        ),
    ] {
        let e = review_with(&s, c, fixture(file), &settings())
            .await
            .unwrap_err();
        assert_eq!((http_status(&e), e.code()), (status, code), "{file}: {}", e);
        assert!(e.to_string().contains(needle), "{file}: {}", e);
    }
    let small = ImportSettings {
        max_bytes: 64,
        ..settings()
    };
    let e = review_with(&s, c, "email\n".repeat(20), &small)
        .await
        .unwrap_err();
    assert_eq!((http_status(&e), e.code()), (413, "file_too_large"));
    assert!(e.to_string().contains("split it"), "{}", e);
    // Ragged rows are row errors, not file errors.
    let id = review_with(&s, c, fixture("m2_malformed_ragged_rows.csv"), &settings())
        .await
        .unwrap();
    let v = view(&s, c, id).await;
    assert!(v.rows.iter().any(|r| r
        .errors
        .iter()
        .any(|e| e.code == "too_few_cells" || e.code == "too_many_cells")));
}

/// The status the HTTP API answers an error with.
fn http_status(e: &AppError) -> u16 {
    roster_api::ApiError::from(e.clone()).status.as_u16()
}

/// The messages of the row on `line`.
fn messages(v: &ImportView, line: u64) -> Vec<String> {
    v.rows
        .iter()
        .find(|r| r.line == line)
        .unwrap_or_else(|| panic!("no row on line {line}"))
        .errors
        .iter()
        .map(|e| e.message.clone())
        .collect()
}

// M2 (issue 11, defect 10): a UTF-8 file with a few damaged bytes is read
// as UTF-8: its correct accents are stored correctly, and each damaged
// sequence is an error of its row naming the line, column and character.
async fn m2_a_utf8_file_with_a_few_bad_bytes_is_utf8_with_row_errors(s: TestStore) {
    let c = s.customer(10, &["example.com"]).await;
    let bytes = [
        "email,first_name,last_name\r\njose@example.com,José,García\r\n".as_bytes(),
        b"rene@example.com,Ren\xE9,Dubois\r\nzoe@example.com,Zo\xC3\xAB,N\xC3\xBA\xC3\xB1ez\r\n",
    ]
    .concat();
    let id = review_with(&s, c, bytes, &settings()).await.unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(v.file.encoding, "utf-8");
    let o = outcomes(&v);
    assert_eq!(o[&2], (Outcome::Add, vec![]));
    assert_eq!(
        o[&3],
        (Outcome::Error, vec!["invalid_encoding".to_string()])
    );
    assert_eq!(o[&4], (Outcome::Add, vec![]));
    let rene = &v.rows.iter().find(|r| r.line == 3).unwrap().errors[0];
    assert_eq!(rene.column.as_deref(), Some("first_name"));
    assert_eq!(
        rene.message,
        "first_name holds 0xE9 (line 3, character 21), which is not UTF-8 although the rest of the file is: retype that character, or save the file again as 'CSV UTF-8'"
    );
    let r = commit(&s, c, id).await;
    assert_eq!((r.added, r.rejected), (2, 1));
    let jose = user(&s, c, "jose@example.com").await.unwrap();
    assert_eq!(jose.state.profile.first_name.as_deref(), Some("José"));
    assert_eq!(jose.state.profile.last_name.as_deref(), Some("García"));
    let zoe = user(&s, c, "zoe@example.com").await.unwrap();
    assert_eq!(zoe.state.profile.last_name.as_deref(), Some("Núñez"));
    assert!(user(&s, c, "rene@example.com").await.is_none());

    // A declared Windows-1252 with a byte it leaves undefined.
    let e = review_read_as(
        &s,
        c,
        b"email,first_name\r\nx@example.com,\x81\r\n".to_vec(),
        ImportOptions {
            encoding: roster_csv::EncodingChoice::Windows1252,
            ..ImportOptions::default()
        },
        &settings(),
    )
    .await
    .unwrap_err();
    assert_eq!((http_status(&e), e.code()), (400, "csv_invalid_encoding"));
    assert!(
        e.to_string()
            .contains("0x81 on line 2, character 15, is not a character in windows-1252"),
        "{}",
        e
    );
}

// M2 messages (issue 11, defect 11): the chosen separator is named (not
// "not separated by commas"), "u20@" has no domain (not "empty"), a space
// after '@' is an error, and echoed cells are cut to 200 characters.
async fn m2_review_messages_name_the_real_problem(s: TestStore) {
    let c = s.customer(10, &["example.com"]).await;
    let e = review_read_as(
        &s,
        c,
        b"email,first_name\r\nann@example.com,Ann\r\n".to_vec(),
        ImportOptions {
            delimiter: Some(roster_csv::Delimiter::Tab),
            ..ImportOptions::default()
        },
        &settings(),
    )
    .await
    .unwrap_err();
    assert_eq!((http_status(&e), e.code()), (400, "csv_not_csv"));
    assert_eq!(
        e.to_string(),
        "the first line, 'email,first_name', has no tabs (tab is the separator chosen with the request) but is separated by commas: choose that separator, or leave it out to have it detected"
    );

    let huge = "h".repeat(5 * 1024 * 1024);
    let file = format!(
        "email,{huge}\nu20@,x\nann@ example.com,y\n{huge}@example.com,z\nok@example.com,w\n"
    );
    let id = review(&s, c, &file).await;
    let v = view(&s, c, id).await;
    assert_eq!(
        messages(&v, 2),
        ["'u20@' is not a valid email address: the domain after '@' is missing"]
    );
    assert_eq!(
        messages(&v, 3),
        ["'ann@ example.com' is not a valid email address: there is a space next to '@': remove it"]
    );
    let long = &messages(&v, 4)[0];
    assert!(
        long.starts_with(&format!("'{}…' is not", "h".repeat(199))),
        "{}",
        &long[..300]
    );
    assert_eq!(v.rows[2].address.chars().count(), 200);
    assert_eq!(v.file.columns[1].name.chars().count(), 200);
    let answer = serde_json::to_string(&v).unwrap();
    assert!(answer.len() < 8_000, "the review is {} bytes", answer.len());
    assert_eq!(outcomes(&v)[&5], (Outcome::Add, vec![]));
}

/// Splits CSV text into records of cells as written (quotes removed).
fn csv_cells(text: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut row = vec![];
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                out.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    out
}

// M2: exports never let a cell start a formula, and an export imports back
// as unchanged.
async fn m2_the_user_export_is_formula_safe_and_reimports_unchanged(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    let id = review(
        &s,
        c,
        "email,first_name,last_name,aliases,home_phone,mobile,company,notes\n\
         eve@acme.example,=cmd|' /C calc'!A0,+SUM(1),\"e@acme.example; eve.x@acme.example\",-5,@mobile,'+49 30 1234,\"@first\n=second\"\n\
         joe@acme.example,Joe,Normal,,,,,\n",
    )
    .await;
    commit(&s, c, id).await;
    s.project().await;
    let eve = user(&s, c, "eve@acme.example").await.unwrap();
    assert_eq!(
        eve.state.profile.first_name.as_deref(),
        Some("=cmd|' /C calc'!A0")
    );
    assert_eq!(eve.state.profile.company.as_deref(), Some("+49 30 1234"));
    let response = roster_api::export::user_list_csv(
        roster_api::AppState::new(s.app(), s.sync()),
        c,
        UserFilter::default(),
        None,
    );
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(bytes.starts_with("\u{FEFF}".as_bytes()), "UTF-8 with BOM");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    assert!(text.contains("\r\n"));
    let rows = csv_cells(text);
    assert_eq!(rows[0][0], "email");
    assert_eq!(rows.len(), 3);
    for row in &rows {
        for cell in row {
            let first = cell.chars().next();
            assert!(
                !matches!(first, Some('=' | '+' | '-' | '@' | '\t' | '\r')),
                "a cell starts a formula: {cell:?}"
            );
        }
    }
    assert_eq!(rows[1][1], "'=cmd|' /C calc'!A0");
    assert_eq!(rows[1][3], "e@acme.example; eve.x@acme.example");
    // The export imports back as unchanged.
    let id = review_with(&s, c, bytes.to_vec(), &settings())
        .await
        .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(v.totals.unchanged, 2, "{:?}", outcomes(&v));
    // Filters apply to the export.
    let response = roster_api::export::user_list_csv(
        roster_api::AppState::new(s.app(), s.sync()),
        c,
        UserFilter {
            q: Some("joe".into()),
            ..UserFilter::default()
        },
        None,
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        csv_cells(std::str::from_utf8(&bytes[3..]).unwrap()).len(),
        2
    );
}

/// Addresses a spreadsheet would read as a formula, or that start with the
/// export's escape quote (issue 11: `'-info@...` came back as a new user).
const HOSTILE_LOCAL_PARTS: [&str; 7] = ["-info", "+tag", "=cmd", "'q", "'-x", "''", "plain"];

/// Profile values an export must escape and an import undo exactly:
/// formula starts, the quote itself before a formula character or alone,
/// full-width forms, separators and quotes.
const HOSTILE_VALUES: [&str; 16] = [
    "=1+2",
    "'=1+2",
    "+44 20 7946 0000",
    "'+44 20 7946 0000",
    "-5",
    "'-x",
    "@SUM(A1)",
    "'@x",
    "''",
    "'",
    "'t Hooft",
    "\u{FF1D}1+1",
    "=HYPERLINK(\"http://x.example\",\"open\")",
    "Sales, EMEA; \"West\"",
    "José Müller",
    "plain",
];

/// Notes may also hold line breaks (CR LF too) and tabs.
const HOSTILE_NOTES: [&str; 4] = [
    "=1+2\nsecond line",
    "line one\r\nline two",
    "a\tb",
    "'=x\r\n'",
];

/// The hostile users of `domain`: every local part, aliases that start with
/// `-` or `'`, and every value in every column.
fn hostile_users(domain: &str) -> Vec<(Address, Vec<Address>, Profile)> {
    HOSTILE_LOCAL_PARTS
        .iter()
        .enumerate()
        .map(|(i, local)| {
            let aliases = match i % 3 {
                0 => vec![
                    addr(&format!("-alias{i}@{domain}")),
                    addr(&format!("b{i}@{domain}")),
                ],
                1 => vec![addr(&format!("'alias{i}@{domain}"))],
                _ => vec![],
            };
            let v = |k: usize| Some(HOSTILE_VALUES[(i * 6 + k) % HOSTILE_VALUES.len()].to_string());
            let profile = Profile {
                first_name: v(0),
                last_name: v(1),
                home_phone: v(2),
                mobile: v(3),
                company: v(4),
                department: v(5),
                notes: Some(HOSTILE_NOTES[i % HOSTILE_NOTES.len()].to_string()),
            };
            (addr(&format!("{local}@{domain}")), aliases, profile)
        })
        .collect()
}

async fn export_users(s: &TestStore, customer: CustomerId) -> Vec<u8> {
    let response = roster_api::export::user_list_csv(
        roster_api::AppState::new(s.app(), s.sync()),
        customer,
        UserFilter::default(),
        None,
    );
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec()
}

// M2 (issue 11, defects 8 and 9): export, import, export again is
// byte-identical for hostile values in addresses and every other column;
// re-importing an export changes nothing (no new users, no alias swaps, no
// dropped quotes), and a canonical file imports to users that export as
// that very file.
async fn m2_export_import_export_is_byte_identical_and_changes_nothing(s: TestStore) {
    // Users added by hand.
    let c = s.customer(50, &["acme.example"]).await;
    let users = hostile_users("acme.example");
    for (address, aliases, profile) in &users {
        users::add_user(
            &s.app(),
            s.meta(c),
            NewUser {
                address: address.clone(),
                kind: Kind::User,
                profile: profile.clone(),
                aliases: aliases.clone(),
            },
            Source::Manual,
        )
        .await
        .unwrap_or_else(|e| panic!("add {address}: {}", e));
    }
    s.project().await;
    let first = export_users(&s, c).await;
    let text = String::from_utf8(first[3..].to_vec()).unwrap();
    for cell in csv_cells(&text).iter().flatten() {
        assert!(!cell.starts_with(roster_csv::FORMULA_TRIGGERS), "{cell:?}");
    }
    assert!(text.contains("'-info@acme.example,"), "{text}");
    assert!(text.contains("''q@acme.example,"), "{text}");
    let head = s.store.head_position().await.unwrap();
    let id = review_with(&s, c, first.clone(), &settings())
        .await
        .unwrap();
    let v = view(&s, c, id).await;
    assert_eq!(
        (v.totals.rows, v.totals.unchanged),
        (users.len() as u64, users.len() as u64),
        "{:#?}",
        v.rows
    );
    let r = commit(&s, c, id).await;
    assert_eq!(
        (r.added, r.updated, r.unchanged),
        (0, 0, users.len() as u64)
    );
    s.project().await;
    let log_after: Vec<_> = log(&s)
        .await
        .into_iter()
        .filter(|e| e.aggregate_type == USER_AGGREGATE)
        .filter(|e| e.position > head)
        .collect();
    assert!(
        log_after.is_empty(),
        "the import changed users: {log_after:?}"
    );
    for (address, aliases, profile) in &users {
        let u = user(&s, c, address.as_str()).await.unwrap().state;
        assert_eq!(&u.profile, profile, "{address}");
        assert_eq!(u.aliases.iter().cloned().collect::<Vec<_>>(), {
            let mut a = aliases.clone();
            a.sort();
            a
        });
    }
    let second = export_users(&s, c).await;
    assert_eq!(
        String::from_utf8_lossy(&second),
        String::from_utf8_lossy(&first)
    );
    assert_eq!(second, first, "export, import, export is byte-identical");

    // Users that come in by CSV: the file an export would write imports
    // to users whose export is that file, byte for byte.
    let c2 = s.customer(50, &["other.example"]).await;
    let mut users = hostile_users("other.example");
    // In the order of the user list (by address), as an export writes it.
    users.sort_by(|a, b| a.0.cmp(&b.0));
    let file = roster_csv::users_csv(
        users
            .iter()
            .map(|(address, aliases, profile)| roster_csv::UserRecord {
                address,
                aliases,
                profile,
            }),
        &roster_csv::ExportOptions::default(),
    );
    let id = review_with(&s, c2, file.clone(), &settings())
        .await
        .unwrap();
    let r = commit(&s, c2, id).await;
    assert_eq!((r.added, r.rejected), (users.len() as u64, 0), "{r:?}");
    s.project().await;
    let exported = export_users(&s, c2).await;
    assert_eq!(
        String::from_utf8_lossy(&exported),
        String::from_utf8_lossy(&file)
    );
}

// D3.m Export and M2: the conflicts view as CSV; no cell starts a formula.
async fn m2_the_conflicts_export_is_formula_safe(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    add_from(
        &s,
        c,
        "mal@acme.example",
        "=HYPERLINK(\"http://x.example\",\"open\")",
        &["m@acme.example"],
        Source::Ldap,
    )
    .await;
    add_from(&s, c, "kept@acme.example", "@Kept", &[], Source::Ldap).await;
    let at = s.clock.now();
    users::user_command(&s.app(), s.meta(c), &addr("mal@acme.example"), || {
        UserCommand::FlagForDeletion {
            reason: FlagReason::Missing,
            at,
            delete_at: Some(at + chrono::Duration::days(7)),
        }
    })
    .await
    .unwrap();
    let mut u = user(&s, c, "mal@acme.example").await.unwrap();
    let first_name = u.state.profile.first_name.clone();
    let mut batch = Batch::new();
    batch
        .execute(
            &mut u,
            UserCommand::UpdateProfile {
                profile: Profile {
                    first_name,
                    last_name: Some("-2+3".into()),
                    ..Profile::default()
                },
            },
            &UserServices::default(),
            &s.meta(c),
        )
        .await
        .unwrap();
    s.store.commit(batch).await.unwrap();
    s.project().await;
    let response = roster_api::export::conflicts_csv(
        roster_api::AppState::new(s.app(), s.sync()),
        c,
        UserFilter {
            status: Some(Status::PendingDeletion),
            ..UserFilter::default()
        },
    );
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(bytes.starts_with("\u{FEFF}".as_bytes()), "UTF-8 with BOM");
    let rows = csv_cells(std::str::from_utf8(&bytes[3..]).unwrap());
    assert_eq!(
        rows[0],
        roster_api::export::CONFLICTS_HEADER
            .map(String::from)
            .to_vec()
    );
    assert_eq!(rows.len(), 2, "only the flagged user: {rows:?}");
    for cell in rows.iter().flatten() {
        assert!(
            !cell.starts_with(roster_csv::FORMULA_TRIGGERS),
            "a cell starts a formula: {cell:?}"
        );
    }
    let mal = &rows[1];
    assert_eq!(mal[0], "mal@acme.example");
    assert_eq!(mal[1], "'=HYPERLINK(\"http://x.example\",\"open\")");
    assert_eq!(mal[2], "'-2+3");
    assert_eq!((mal[3].as_str(), mal[4].as_str()), ("LDAP", "missing"));
    assert!(mal[5].starts_with("2026-11-02T09:00:00"), "{mal:?}");
    assert!(mal[6].starts_with("2026-11-09T09:00:00"), "{mal:?}");
    assert_eq!(mal[7], "m@acme.example");
}

// M2: the sample file imports cleanly.
async fn m2_the_sample_file_imports_cleanly(s: TestStore) {
    let c = s.customer(10, &["acme.example"]).await;
    let sample = imports::sample(&s.app(), c).await.unwrap();
    assert!(sample.contains("@acme.example"));
    let id = review(&s, c, &sample).await;
    let v = view(&s, c, id).await;
    assert_eq!((v.totals.add, v.totals.error), (3, 0), "{:?}", outcomes(&v));
    assert!(v.file.warnings.is_empty());
    let r = commit(&s, c, id).await;
    assert_eq!(r.added, 3);
}

both_backends!(
    m2_review_classifies_every_row_and_changes_nothing,
    m2_commit_applies_exactly_the_plan_with_source_csv,
    m2_a_second_commit_answers_the_first_result_and_applies_nothing,
    m2_a_stale_review_is_refused_and_nothing_is_applied,
    t3_additions_beyond_the_free_seats_are_refused_in_file_order,
    u1_review_reports_every_address_conflict,
    u1_an_alias_moves_between_users_of_one_file,
    u6_an_import_brings_a_deleted_user_back,
    d3g_rows_for_directory_users_are_reported_while_sync_is_on,
    m2_an_interrupted_commit_completes_without_applying_anything_twice,
    m2_a_user_changed_during_a_commit_is_skipped_and_reported,
    m2_a_chunk_staged_ahead_is_never_applied_over_a_later_edit,
    m2_spreadsheet_files_review_and_commit,
    m2_malformed_files_get_clear_errors,
    m2_a_utf8_file_with_a_few_bad_bytes_is_utf8_with_row_errors,
    m2_review_messages_name_the_real_problem,
    m2_the_user_export_is_formula_safe_and_reimports_unchanged,
    m2_export_import_export_is_byte_identical_and_changes_nothing,
    m2_the_conflicts_export_is_formula_safe,
    m2_the_sample_file_imports_cleanly,
);

// ---------------------------------------------------------------------------
// End to end, through the real binary.

async fn send(
    api: &roster_tests::Api,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let resp = api
        .client
        .post(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "----roster-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, file_name, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file_name {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Sends only the head of a POST that declares a body of `length` bytes,
/// and reads the answer (a refusal must not wait for the body).
async fn declare_length(api: &roster_tests::Api, path: &str, length: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = api.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: text/csv\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        api.token
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(answer.clone())),
    )
}

/// Opens the store the process uses, from the test.
async fn store_of(p: &RosterProcess) -> roster_store::Store {
    let db = match &p.database_url {
        Some(url) => roster_store::Db::connect_postgres(url, 2).await.unwrap(),
        None => roster_store::Db::open_sqlite(&p.data_dir).await.unwrap(),
    };
    roster_store::Store::open(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_imports_end_to_end_upload_body_pasted_text_review_commit() {
    on_both(|p| async move {
        let api = p.admin();
        let c = api.customer("Acme", 4, &["example.com", "acme.example"]).await;
        let imports = format!("/v1/customers/{c}/imports");
        api.post(
            &format!("/v1/customers/{c}/users"),
            json!({"address": "carl@example.com", "first_name": "Carl"}),
        )
        .await;

        // The sample file downloads and reviews cleanly.
        let resp = api
            .client
            .get(format!("{}{imports}/sample.csv", api.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let sample = resp.bytes().await.unwrap().to_vec();
        assert!(String::from_utf8_lossy(&sample).contains("@acme.example"));
        let (s, v) = send(&api, &imports, "text/csv", sample).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!((v["totals"]["add"].as_u64(), v["totals"]["error"].as_u64()), (Some(3), Some(0)), "{v}");

        // A multipart upload (UTF-16 LE from Excel): one seat is left after
        // the manual user and the sample is not committed: 3 adds fit.
        let (ct, body) = multipart(&[(
            "file",
            Some("Unicode Text.txt"),
            &fixture("m2_unicode_text_utf16le_tab.txt"),
        )]);
        let (s, v) = send(&api, &imports, &ct, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["file"]["name"], "Unicode Text.txt");
        assert_eq!(v["file"]["input"], "upload");
        assert_eq!(v["file"]["encoding"], "utf-16le");
        assert_eq!(v["totals"]["add"], 3, "{v}");
        assert_eq!(v["rows"][0]["line"], 2);
        let upload = v["id"].as_str().unwrap().to_string();

        // Pasted text, as JSON and as text/plain, with the row checks.
        let (s, v) = api
            .post(
                &imports,
                json!({"text": "email;first_name\ncarl@example.com;Carlos\nnope;X\ncarl@example.com;Again\n"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["file"]["input"], "text");
        assert_eq!(v["file"]["delimiter"], "semicolon");
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows[0]["outcome"], "update");
        assert_eq!(rows[0]["changes"][0]["before"], "Carl");
        assert_eq!(rows[1]["outcome"], "error");
        assert_eq!(rows[1]["errors"][0]["code"], "invalid_address");
        assert_eq!(rows[1]["errors"][0]["column"], "email");
        assert_eq!(rows[2]["errors"][0]["code"], "duplicate_address");
        let pasted = v["id"].as_str().unwrap().to_string();
        let (s, v) = send(&api, &imports, "text/plain", b"email\nz@example.com\n".to_vec()).await;
        assert_eq!((s, v["file"]["input"].as_str()), (StatusCode::CREATED, Some("text")), "{v}");

        // Nothing changed at review.
        let (_, list) = api.get(&format!("/v1/customers/{c}/users")).await;
        assert_eq!(list["users"].as_array().unwrap().len(), 1);

        // Commit, re-commit.
        let (s, r) = api.post(&format!("{imports}/{upload}/commit"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["added"], 3);
        let (_, list) = api.get(&format!("/v1/customers/{c}/users?source=csv")).await;
        assert_eq!(list["users"].as_array().unwrap().len(), 3, "read-your-writes");
        let (s, again) = api.post(&format!("{imports}/{upload}/commit"), json!({})).await;
        assert_eq!((s, &again), (StatusCode::OK, &r));
        let (s, v) = api.get(&format!("{imports}/{upload}?outcome=add&page_size=2")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "committed");
        assert_eq!(v["rows"].as_array().unwrap().len(), 2);
        let (_, next) = api
            .get(&format!("{imports}/{upload}?outcome=add&page_size=2&page={}", v["next_page"].as_str().unwrap()))
            .await;
        assert_eq!(next["rows"].as_array().unwrap().len(), 1);

        // The pasted review is still valid: carl is unchanged since.
        let (s, r) = api.post(&format!("{imports}/{pasted}/commit"), json!({})).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let (_, carl) = api.get(&format!("/v1/customers/{c}/users/{}", enc("carl@example.com"))).await;
        assert_eq!(carl["first_name"], "Carlos");
        assert_eq!(carl["source"], "manual");

        // A stale review.
        let (_, v) = send(&api, &imports, "text/csv", b"email,last_name\ncarl@example.com,Wade\n".to_vec()).await;
        let stale = v["id"].as_str().unwrap().to_string();
        api.patch(&format!("/v1/customers/{c}/users/{}", enc("carl@example.com")), json!({"mobile": "0170 1"}))
            .await;
        let (s, e) = api.post(&format!("{imports}/{stale}/commit"), json!({})).await;
        assert_eq!((s, e["code"].as_str()), (StatusCode::CONFLICT, Some("review_stale")), "{e}");

        // Directory-managed rows are reported while sync is on.
        let store = store_of(&p).await;
        let cid = CustomerId::parse(&c).unwrap();
        let uid = UserId::new();
        let mut u: Loaded<User> = Loaded::new(uid.to_string());
        let mut batch = Batch::new();
        let meta = EventMeta {
            customer_id: cid,
            actor: Actor::System("test".into()),
            correlation_id: CorrelationId::new(),
            time: chrono::Utc::now(),
        };
        batch
            .execute(
                &mut u,
                UserCommand::Add(roster_domain::AddUser {
                    user_id: uid,
                    customer_id: cid,
                    address: addr("dir@acme.example"),
                    kind: Kind::User,
                    source: Source::Ldap,
                    profile: Profile::default(),
                    aliases: vec![],
                    directory_id: Some("1".into()),
                    members: vec![],
                }),
                &UserServices::default(),
                &meta,
            )
            .await
            .unwrap();
        store.commit(batch).await.unwrap();
        enable_directory(&store, cid).await;
        let (s, v) = send(&api, &imports, "text/csv", b"email,department\ndir@acme.example,Sales\n".to_vec()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["directory_sync"], "ldap");
        assert_eq!(v["rows"][0]["errors"][0]["code"], "directory_managed", "{v}");
        store.db().close().await;

        // Malformed files and limits.
        let (s, e) = send(&api, &imports, "text/csv", Vec::new()).await;
        assert_eq!((s, e["code"].as_str()), (StatusCode::BAD_REQUEST, Some("csv_empty")), "{e}");
        let (s, e) = send(&api, &imports, "application/octet-stream", fixture("m2_malformed_xlsx_workbook.xlsx")).await;
        assert_eq!((s, e["code"].as_str()), (StatusCode::BAD_REQUEST, Some("csv_binary")), "{e}");
        // Over the limit: refused from the declared length, before the body is read.
        let (s, e) = declare_length(&api, &imports, roster_csv::DEFAULT_MAX_BYTES + 3 * 1024 * 1024).await;
        assert_eq!((s, e["code"].as_str()), (413, Some("file_too_large")), "{e}");
        // A file between the other routes' 8 MiB and the import limit is read.
        let mut large = b"email,notes\n".to_vec();
        while large.len() < 9 * 1024 * 1024 {
            large.extend_from_slice(format!("u{}@nowhere.example,{}\n", large.len(), "n".repeat(200)).as_bytes());
        }
        let (s, v) = send(&api, &imports, "text/csv", large).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["totals"]["error"], v["totals"]["rows"], "unmanaged domain on every row");
        // Other routes keep their 8 MiB limit.
        let (s, e) = declare_length(&api, &format!("/v1/customers/{c}/users"), 9 * 1024 * 1024).await;
        assert_eq!((s, e["code"].as_str()), (413, Some("request_too_large")), "{e}");

        // The user list as CSV, by format and by Accept.
        let resp = api
            .client
            .get(format!("{}/v1/customers/{c}/users", api.base))
            .bearer_auth(&api.token)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
        let csv = resp.bytes().await.unwrap();
        let csv = String::from_utf8(csv.to_vec()).unwrap();
        assert!(csv.starts_with("\u{FEFF}email,first_name,last_name,aliases"), "{csv}");
        assert!(csv.contains("carl@example.com,Carlos"), "{csv}");
        let (s, v) = api.get(&format!("/v1/customers/{c}/users?format=csv&source=csv")).await;
        assert_eq!(s, StatusCode::OK);
        // Records, not lines: René's note spans two lines inside its quotes.
        assert_eq!(csv_cells(v.as_str().unwrap()).len(), 4, "{v}");
        // Issue 11: an export imports back as unchanged through the API,
        // and exports again to the same bytes (hostile values by hand).
        let (s, v) = api
            .patch(
                &format!("/v1/customers/{c}/users/{}", enc("carl@example.com")),
                json!({"last_name": "-5", "mobile": "'+44 20 7946 0000", "notes": "'=1+2\r\n@x"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let export = || async {
            let resp = api
                .client
                .get(format!("{}/v1/customers/{c}/users?format=csv", api.base))
                .bearer_auth(&api.token)
                .send()
                .await
                .unwrap();
            resp.bytes().await.unwrap().to_vec()
        };
        let first = export().await;
        let text = String::from_utf8_lossy(&first).to_string();
        assert!(text.contains("carl@example.com,Carlos,'-5,,,''+44 20 7946 0000,,,\"''=1+2\r\n@x\""), "{text}");
        let (s, v) = send(&api, &imports, "text/csv", first.clone()).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["totals"]["unchanged"], v["totals"]["rows"], "{v}");
        let (s, r) = api.post(&format!("{imports}/{}/commit", v["id"].as_str().unwrap()), json!({})).await;
        assert_eq!((s, r["added"].as_u64(), r["updated"].as_u64()), (StatusCode::OK, Some(0), Some(0)), "{r}");
        assert_eq!(String::from_utf8_lossy(&export().await), text);

        // The OpenAPI document lists the import routes.
        let (_, doc) = api.get("/openapi.json").await;
        for path in ["/v1/customers/{c}/imports", "/v1/customers/{c}/imports/{id}/commit", "/v1/customers/{c}/imports/sample.csv"] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        p.stop().await;
    })
    .await;
}
