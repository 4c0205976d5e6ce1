//! PgDb creates private databases and drops them.

use roster_testkit::PgDb;

async fn exists(name: &str) -> bool {
    let admin =
        std::env::var("ROSTER_TEST_PG").unwrap_or_else(|_| roster_testkit::DEFAULT_PG_URL.into());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("admin connection");
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n.0 == 1
}

#[tokio::test]
async fn creates_a_usable_database_and_drops_it_with_connections_open() {
    let db = PgDb::create().await.unwrap();
    assert!(db.name().starts_with(roster_testkit::DB_PREFIX));
    assert!(db.url().ends_with(db.name()), "{}", db.url());
    let pool = db.pool().await.unwrap();
    sqlx::query("CREATE TABLE t (id int primary key)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1), (2)")
        .execute(&pool)
        .await
        .unwrap();
    let n: (i64,) = sqlx::query_as("SELECT count(*) FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n.0, 2);
    let current: (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current.0, db.name());

    let name = db.name().to_string();
    assert!(exists(&name).await);
    // The pool still holds connections: drop_now terminates them.
    db.drop_now().await.unwrap();
    assert!(!exists(&name).await);
}

#[tokio::test]
async fn databases_are_distinct_and_dropped_on_drop() {
    let a = PgDb::create().await.unwrap();
    let b = PgDb::create().await.unwrap();
    assert_ne!(a.name(), b.name());
    let (na, nb) = (a.name().to_string(), b.name().to_string());
    let pool = a.pool().await.unwrap();
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    drop(a);
    drop(b);
    assert!(!exists(&na).await);
    assert!(!exists(&nb).await);
}
