//! Registry metadata behind a trait (SQLite today; PostgreSQL can follow behind the same seam).
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use crpc_package::client::VersionInfo;
use crpc_package::Manifest;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row did not parse.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Registry metadata.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Records a new version in one transaction: a new name becomes `v.publisher`'s; an
    /// existing one takes versions only from its owners (anyone when `any_owner`, for admins).
    async fn insert(&self, v: &VersionInfo, any_owner: bool) -> Result<Insert, StoreError>;
    /// Owners of a package, sorted; empty when nobody has published it.
    async fn owners(&self, name: &str) -> Result<Vec<String>, StoreError>;
    /// Adds owners to an existing package (already-owners are left as they are).
    async fn add_owners(&self, name: &str, who: &[String], by: &str) -> Result<(), StoreError>;
    /// Removes owners; refused (`Ok(false)`, nothing removed) when none would be left.
    async fn remove_owners(&self, name: &str, who: &[String]) -> Result<bool, StoreError>;
    /// One version.
    async fn get(&self, name: &str, version: &str) -> Result<Option<VersionInfo>, StoreError>;
    /// Every version of a package, newest first.
    async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError>;
    /// Package names with their version count and newest non-yanked version.
    async fn packages(&self) -> Result<Vec<(String, u64, Option<String>)>, StoreError>;
    /// Sets the yanked flag; `Ok(false)` when the version does not exist.
    async fn set_yanked(&self, name: &str, version: &str, yanked: bool)
        -> Result<bool, StoreError>;
    /// Non-yanked versions of packages exporting `function`.
    async fn with_function(&self, function: &str) -> Result<Vec<VersionInfo>, StoreError>;
    /// Every (name, version, sha256), for re-verifying blobs.
    async fn all_digests(&self) -> Result<Vec<(String, String, String)>, StoreError>;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What became of an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Recorded.
    Inserted,
    /// That version exists (versions are immutable).
    Exists,
    /// The package belongs to others.
    NotOwner,
}

/// Claims a package name for `v.publisher` inside `tx`, or checks that they own it; `false` when
/// someone else does (and `any_owner` is not set). The same SQL on both backends: SQLite numbers
/// `$N` parameters in order of first use, which these statements follow.
macro_rules! claim_package {
    ($tx:ident, $v:ident, $any_owner:ident) => {{
        let created = sqlx::query(
            "INSERT INTO packages (name, created_by, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&$v.name)
        .bind(&$v.publisher)
        .bind($v.published_at)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if created > 0 {
            sqlx::query(
                "INSERT INTO owners (name, owner, added_by, added_at) VALUES ($1, $2, $2, $3)",
            )
            .bind(&$v.name)
            .bind(&$v.publisher)
            .bind($v.published_at)
            .execute(&mut *$tx)
            .await?;
        }
        created > 0
            || $any_owner
            || sqlx::query("SELECT 1 FROM owners WHERE name = $1 AND owner = $2")
                .bind(&$v.name)
                .bind(&$v.publisher)
                .fetch_optional(&mut *$tx)
                .await?
                .is_some()
    }};
}

/// The owner statements of [`RegistryStore`], one text for both backends (see `claim_package`),
/// as functions over a backend's pool.
macro_rules! owner_statements {
    ($pool:ty) => {
        use super::{now_ms, StoreError};

        pub async fn owners(pool: &$pool, name: &str) -> Result<Vec<String>, StoreError> {
            Ok(
                sqlx::query_scalar("SELECT owner FROM owners WHERE name = $1 ORDER BY owner")
                    .bind(name)
                    .fetch_all(pool)
                    .await?,
            )
        }

        pub async fn add_owners(
            pool: &$pool,
            name: &str,
            who: &[String],
            by: &str,
        ) -> Result<(), StoreError> {
            let mut tx = pool.begin().await?;
            for owner in who {
                sqlx::query(
                    "INSERT INTO owners (name, owner, added_by, added_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name, owner) DO NOTHING",
                )
                .bind(name)
                .bind(owner)
                .bind(by)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        pub async fn remove_owners(
            pool: &$pool,
            name: &str,
            who: &[String],
        ) -> Result<bool, StoreError> {
            let mut tx = pool.begin().await?;
            // A write to the package row first: concurrent removals queue behind it (PostgreSQL
            // row lock; SQLite's single writer), so two of them cannot both leave one owner.
            sqlx::query("UPDATE packages SET created_by = created_by WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            for owner in who {
                sqlx::query("DELETE FROM owners WHERE name = $1 AND owner = $2")
                    .bind(name)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
            }
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM owners WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            if left == 0 {
                return Ok(false);
            }
            tx.commit().await?;
            Ok(true)
        }
    };
}

mod sqlite_owners {
    owner_statements!(sqlx::SqlitePool);
}

mod pg_owners {
    owner_statements!(sqlx::PgPool);
}

/// SQLite metadata store.
pub struct SqliteRegistry {
    pool: SqlitePool,
}

impl SqliteRegistry {
    /// Opens (creating) `path` and migrates.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens a `sqlite:` URL.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::open_with(SqliteConnectOptions::from_str(url)?).await
    }

    /// Applies the tuning every path gets (WAL, NORMAL sync, busy timeout), then opens.
    async fn open_with(opts: SqliteConnectOptions) -> Result<Self, StoreError> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        // One writer is plenty for publish rates; reads share the pool.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteRegistry { pool })
    }
}

fn info_from_row(row: &SqliteRow) -> Result<VersionInfo, StoreError> {
    let manifest: String = row.try_get("manifest")?;
    Ok(VersionInfo {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get::<i64, _>("size")? as u64,
        signature: row.try_get("signature")?,
        yanked: row.try_get::<i64, _>("yanked")? != 0,
        published_at: row.try_get("published_at")?,
        publisher: row.try_get("publisher")?,
        manifest: serde_json::from_str::<Manifest>(&manifest)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

const COLUMNS: &str =
    "name, version, sha256, size, signature, yanked, manifest, publisher, published_at";

#[async_trait]
impl RegistryStore for SqliteRegistry {
    async fn insert(&self, v: &VersionInfo, any_owner: bool) -> Result<Insert, StoreError> {
        let sv = v.manifest.semver();
        let mut tx = self.pool.begin().await?;
        if !claim_package!(tx, v, any_owner) {
            return Ok(Insert::NotOwner);
        }
        let done = sqlx::query(
            "INSERT INTO versions (name, version, major, minor, patch, sha256, size, signature, yanked, manifest, publisher, published_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?11) ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(&v.name)
        .bind(&v.version)
        .bind(sv.major as i64)
        .bind(sv.minor as i64)
        .bind(sv.patch as i64)
        .bind(&v.sha256)
        .bind(v.size as i64)
        .bind(&v.signature)
        .bind(serde_json::to_string(&v.manifest).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(&v.publisher)
        .bind(v.published_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(Insert::Exists);
        }
        for f in v.manifest.functions.keys() {
            sqlx::query("INSERT INTO functions (function, name, version) VALUES (?1, ?2, ?3)")
                .bind(f)
                .bind(&v.name)
                .bind(&v.version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Insert::Inserted)
    }

    async fn get(&self, name: &str, version: &str) -> Result<Option<VersionInfo>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM versions WHERE name = ?1 AND version = ?2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(info_from_row).transpose()
    }

    async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM versions WHERE name = ?1 ORDER BY major DESC, minor DESC, patch DESC, version DESC"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        // Semver decides the order (pre-releases sort below their release).
        Ok(newest_first(
            rows.iter().map(info_from_row).collect::<Result<_, _>>()?,
        ))
    }

    async fn packages(&self) -> Result<Vec<(String, u64, Option<String>)>, StoreError> {
        let names: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, count(*) FROM versions GROUP BY name ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(names.len());
        for (name, n) in names {
            let latest = self
                .versions(&name)
                .await?
                .into_iter()
                .find(|v| !v.yanked)
                .map(|v| v.version);
            out.push((name, n as u64, latest));
        }
        Ok(out)
    }

    async fn set_yanked(
        &self,
        name: &str,
        version: &str,
        yanked: bool,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE versions SET yanked = ?3 WHERE name = ?1 AND version = ?2")
            .bind(name)
            .bind(version)
            .bind(yanked as i64)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn with_function(&self, function: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM versions v JOIN functions f ON f.name = v.name AND f.version = v.version \
             WHERE f.function = ?1 AND v.yanked = 0",
            COLUMNS.split(", ").map(|c| format!("v.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(function)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(info_from_row).collect()
    }

    async fn all_digests(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT name, version, sha256 FROM versions")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn owners(&self, name: &str) -> Result<Vec<String>, StoreError> {
        sqlite_owners::owners(&self.pool, name).await
    }

    async fn add_owners(&self, name: &str, who: &[String], by: &str) -> Result<(), StoreError> {
        sqlite_owners::add_owners(&self.pool, name, who, by).await
    }

    async fn remove_owners(&self, name: &str, who: &[String]) -> Result<bool, StoreError> {
        sqlite_owners::remove_owners(&self.pool, name, who).await
    }
}

/// PostgreSQL metadata store (several registry replicas may share it; blobs then need a shared
/// directory).
pub struct PgRegistry {
    pool: PgPool,
}

impl PgRegistry {
    /// Connects and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgRegistry { pool })
    }
}

fn pg_info_from_row(row: &PgRow) -> Result<VersionInfo, StoreError> {
    let manifest: String = row.try_get("manifest")?;
    Ok(VersionInfo {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get::<i64, _>("size")? as u64,
        signature: row.try_get("signature")?,
        yanked: row.try_get("yanked")?,
        published_at: row.try_get("published_at")?,
        publisher: row.try_get("publisher")?,
        manifest: serde_json::from_str::<Manifest>(&manifest)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn newest_first(mut v: Vec<VersionInfo>) -> Vec<VersionInfo> {
    v.sort_by_key(|v| std::cmp::Reverse(v.manifest.semver()));
    v
}

#[async_trait]
impl RegistryStore for PgRegistry {
    async fn insert(&self, v: &VersionInfo, any_owner: bool) -> Result<Insert, StoreError> {
        let sv = v.manifest.semver();
        let mut tx = self.pool.begin().await?;
        if !claim_package!(tx, v, any_owner) {
            return Ok(Insert::NotOwner);
        }
        let done = sqlx::query(
            "INSERT INTO versions (name, version, major, minor, patch, sha256, size, signature, yanked, manifest, publisher, published_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $10, $11) ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(&v.name)
        .bind(&v.version)
        .bind(sv.major as i64)
        .bind(sv.minor as i64)
        .bind(sv.patch as i64)
        .bind(&v.sha256)
        .bind(v.size as i64)
        .bind(&v.signature)
        .bind(serde_json::to_string(&v.manifest).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        .bind(&v.publisher)
        .bind(v.published_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(Insert::Exists);
        }
        for f in v.manifest.functions.keys() {
            sqlx::query("INSERT INTO functions (function, name, version) VALUES ($1, $2, $3)")
                .bind(f)
                .bind(&v.name)
                .bind(&v.version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Insert::Inserted)
    }

    async fn get(&self, name: &str, version: &str) -> Result<Option<VersionInfo>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM versions WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pg_info_from_row).transpose()
    }

    async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM versions WHERE name = $1"))
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
        Ok(newest_first(
            rows.iter()
                .map(pg_info_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    async fn packages(&self) -> Result<Vec<(String, u64, Option<String>)>, StoreError> {
        let names: Vec<(String, i64)> =
            sqlx::query_as("SELECT name, count(*) FROM versions GROUP BY name ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(names.len());
        for (name, n) in names {
            let latest = self
                .versions(&name)
                .await?
                .into_iter()
                .find(|v| !v.yanked)
                .map(|v| v.version);
            out.push((name, n as u64, latest));
        }
        Ok(out)
    }

    async fn set_yanked(
        &self,
        name: &str,
        version: &str,
        yanked: bool,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE versions SET yanked = $3 WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .bind(yanked)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn with_function(&self, function: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM versions v JOIN functions f ON f.name = v.name AND f.version = v.version \
             WHERE f.function = $1 AND NOT v.yanked",
            COLUMNS.split(", ").map(|c| format!("v.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(function)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pg_info_from_row).collect()
    }

    async fn all_digests(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT name, version, sha256 FROM versions")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn owners(&self, name: &str) -> Result<Vec<String>, StoreError> {
        pg_owners::owners(&self.pool, name).await
    }

    async fn add_owners(&self, name: &str, who: &[String], by: &str) -> Result<(), StoreError> {
        pg_owners::add_owners(&self.pool, name, who, by).await
    }

    async fn remove_owners(&self, name: &str, who: &[String]) -> Result<bool, StoreError> {
        pg_owners::remove_owners(&self.pool, name, who).await
    }
}
