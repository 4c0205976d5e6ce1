//! Set-based writes on SQLite (issue 17). SQLite has no array parameters,
//! and one statement per row costs a round trip to sqlx's worker thread
//! each (the user list of an initial sync of 100,000 users made about
//! 500,000 of them). Here a batch's rows go in as one JSON array of row
//! arrays, read back in SQL with `json_each`: one statement per table and
//! batch, as `UNNEST` does on PostgreSQL. The store appends events and
//! address claims this way; the projections write their tables this way.
//!
//! A row is a JSON array whose elements are the columns in order; `value
//! ->> i` gives them back as SQL values (JSON text as TEXT, integers as
//! INTEGER, `true`/`false` as 1/0, `null` as NULL).

use serde::Serialize;

/// The rows as one JSON text for a `json_each` parameter. A row is a
/// [`serde_json::Value`] array or anything that serialises as one (a tuple
/// of strings, integers and booleans needs no `Value` per cell).
pub fn rows_json<R: Serialize, I: IntoIterator<Item = R>>(rows: I) -> String {
    let rows: Vec<R> = rows.into_iter().collect();
    // Rows are arrays of plain values: nothing in them can fail to serialise.
    serde_json::to_string(&rows).unwrap_or_else(|e| unreachable!("rows serialise: {e}"))
}

/// `SELECT value ->> 0, ..., value ->> (n-1) FROM json_each(<param>) WHERE
/// true`: the rows of the JSON parameter `param` (for example `$1`) as a
/// query (the `WHERE` keeps an `ON CONFLICT` that follows from being read
/// as a join constraint).
pub fn select_rows(columns: usize, param: &str) -> String {
    let cols: Vec<String> = (0..columns).map(|i| format!("value ->> {i}")).collect();
    format!(
        "SELECT {} FROM json_each({param}) WHERE true",
        cols.join(", ")
    )
}

/// `IN (SELECT value FROM json_each(<param>))`, for a JSON array of keys.
pub fn in_keys(param: &str) -> String {
    format!("IN (SELECT value FROM json_each({param}))")
}

/// Inserts the rows (a [`rows_json`] text of `columns`-element arrays):
/// `<head> SELECT ... FROM json_each(?) WHERE true <tail>`, where `head` is
/// `INSERT INTO table (columns)` and `tail` an optional `ON CONFLICT`
/// clause. Nothing is sent when there are no rows.
pub async fn insert(
    t: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    head: &str,
    columns: usize,
    rows: &str,
    tail: &str,
) -> Result<(), sqlx::Error> {
    if rows == "[]" {
        return Ok(());
    }
    sqlx::query(&format!("{head} {} {tail}", select_rows(columns, "$1")))
        .bind(rows)
        .execute(&mut **t)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn rows_survive_the_round_trip_through_json_each() {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (a TEXT PRIMARY KEY, b INTEGER, c TEXT, d BOOLEAN)")
            .execute(&mut c)
            .await
            .unwrap();
        let rows = rows_json([
            json!(["x", 1, null, true]),
            json!(["y\"'\\ é 😀", i64::MAX, "z", false]),
        ]);
        let sql = format!(
            "INSERT INTO t (a, b, c, d) {} ON CONFLICT (a) DO UPDATE SET b = excluded.b",
            select_rows(4, "$1")
        );
        sqlx::query(&sql).bind(&rows).execute(&mut c).await.unwrap();
        sqlx::query(&sql).bind(&rows).execute(&mut c).await.unwrap();
        let got: Vec<(String, i64, Option<String>, bool)> =
            sqlx::query_as("SELECT a, b, c, d FROM t ORDER BY a")
                .fetch_all(&mut c)
                .await
                .unwrap();
        assert_eq!(
            got,
            vec![
                ("x".into(), 1, None, true),
                ("y\"'\\ é 😀".into(), i64::MAX, Some("z".into()), false)
            ]
        );
        let keys = rows_json([json!("x")]);
        sqlx::query(&format!("DELETE FROM t WHERE a {}", in_keys("$1")))
            .bind(&keys)
            .execute(&mut c)
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
