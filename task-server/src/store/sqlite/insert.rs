//! SQLite inserts: multi-row VALUES statements with bound parameters (no JSON parsing on the
//! writer, which is the store's bottleneck).
use sqlx::sqlite::SqliteConnection;

use crate::store::rows::DbId;
use crate::store::statements::sql_file;
use crate::store::{NewTask, Result};

/// `INSERT INTO tasks (…) VALUES`, followed by one [`ROW`] per task.
const HEAD: &str = sql_file!("sqlite", "insert_tasks");
/// One task's values.
const ROW: &str = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
/// Rows per INSERT statement (33 bound values each, far below SQLite's 32,766 limit).
const CHUNK: usize = 100;

/// Inserts a batch record.
pub(super) async fn batch(
    conn: &mut SqliteConnection,
    id: DbId,
    owner: &str,
    total: i64,
    now: i64,
) -> Result<()> {
    sqlx::query(sql_file!("sqlite", "insert_batch"))
        .bind(id)
        .bind(owner)
        .bind(total)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts tasks of `owner`, created `now`, in `batch` (their index is their position).
pub(super) async fn tasks(
    conn: &mut SqliteConnection,
    owner: &str,
    now: i64,
    batch: Option<DbId>,
    tasks: &[NewTask],
) -> Result<()> {
    let Some(first) = tasks.first() else {
        return Ok(());
    };
    // Fair share: the submit's tasks take consecutive turns from here (migration 0011).
    let fair: i64 = sqlx::query_scalar(sql_file!("sqlite", "fair_base"))
        .bind(owner)
        .bind(first.priority)
        .fetch_one(&mut *conn)
        .await?;
    for (c, chunk) in tasks.chunks(CHUNK).enumerate() {
        let mut sql = String::with_capacity(HEAD.len() + chunk.len() * (ROW.len() + 1));
        sql.push_str(HEAD);
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(ROW);
        }
        let mut q = sqlx::query(&sql);
        for (i, t) in chunk.iter().enumerate() {
            let index = batch.map(|_| (c * CHUNK + i) as i64);
            let datasets = (!t.req_datasets.is_empty())
                .then(|| serde_json::to_string(&t.req_datasets))
                .transpose()?;
            q = q
                .bind(DbId(t.id))
                .bind(owner)
                .bind(&t.package)
                .bind(&t.version)
                .bind(&t.function)
                .bind(serde_json::to_string(&t.args)?)
                .bind(serde_json::to_string(&t.kwargs)?)
                .bind(t.state.as_str())
                .bind(t.priority)
                .bind(t.max_attempts as i64)
                .bind(t.timeout_s.map(|x| x as i64))
                .bind(t.not_before.unwrap_or(now))
                .bind(now)
                .bind(t.ttl_s.map(|x| x.min(i64::MAX as u64) as i64))
                .bind(&t.idempotency_key)
                .bind(&t.request_hash)
                .bind(batch)
                .bind(index)
                .bind(&t.args_hash)
                .bind(t.memoize)
                .bind(t.req_gpus as i64)
                .bind(t.req_memory_mb.min(i64::MAX as u64) as i64)
                .bind(datasets)
                .bind(&t.cost.by)
                .bind(t.cost.at(0))
                .bind(t.cost.at(1))
                .bind(t.cost.at(2))
                .bind(json_or_null(&t.depends_on, t.depends_on.is_empty())?)
                .bind(t.cost_at.as_ref().map(serde_json::to_string).transpose()?)
                .bind(fair + (c * CHUNK + i) as i64)
                .bind(&t.cap_fn)
                .bind(&t.cap_key)
                .bind(t.capped());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `v` as JSON text, or NULL.
fn json_or_null<T: serde::Serialize>(v: &T, null: bool) -> Result<Option<String>> {
    Ok((!null).then(|| serde_json::to_string(v)).transpose()?)
}
