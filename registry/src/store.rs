//! Registry metadata behind [`RegistryStore`], on SQLite or PostgreSQL. The SQL text is in
//! `queries/<dialect>/<name>.sql` (both dialects take the same parameters); the Rust above it is
//! written once ([`registry_store!`]) and expanded for each backend's pool.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use crpc_package::client::VersionInfo;
use crpc_package::Manifest;
use crpc_service::sql_file;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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

/// A version row.
#[derive(sqlx::FromRow)]
struct VersionRow {
    name: String,
    version: String,
    sha256: String,
    size: i64,
    signature: Option<String>,
    yanked: bool,
    manifest: String,
    publisher: String,
    published_at: i64,
}

impl TryFrom<VersionRow> for VersionInfo {
    type Error = StoreError;
    fn try_from(r: VersionRow) -> Result<Self, StoreError> {
        Ok(VersionInfo {
            name: r.name,
            version: r.version,
            sha256: r.sha256,
            size: r.size.max(0) as u64,
            signature: r.signature,
            yanked: r.yanked,
            published_at: r.published_at,
            publisher: r.publisher,
            manifest: serde_json::from_str::<Manifest>(&r.manifest)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        })
    }
}

fn versions_from(rows: Vec<VersionRow>) -> Result<Vec<VersionInfo>, StoreError> {
    rows.into_iter().map(TryInto::try_into).collect()
}

fn newest_first(mut v: Vec<VersionInfo>) -> Vec<VersionInfo> {
    v.sort_by_key(|v| std::cmp::Reverse(v.manifest.semver()));
    v
}

/// Implements [`RegistryStore`] for `$store` (a struct with a `pool` of database `$db`) with
/// the statements of `queries/$dir`.
macro_rules! registry_store {
    ($store:ty, $db:ty, $dir:literal) => {
        impl $store {
            /// Claims `v.name` for `v.publisher` inside `tx`, or checks that they own it;
            /// `false` when someone else does (and `any_owner` is not set).
            async fn claim_package(
                tx: &mut sqlx::Transaction<'_, $db>,
                v: &VersionInfo,
                any_owner: bool,
            ) -> Result<bool, StoreError> {
                let created = sqlx::query(sql_file!($dir, "claim_package"))
                    .bind(&v.name)
                    .bind(&v.publisher)
                    .bind(v.published_at)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if created > 0 {
                    sqlx::query(sql_file!($dir, "add_first_owner"))
                        .bind(&v.name)
                        .bind(&v.publisher)
                        .bind(v.published_at)
                        .execute(&mut **tx)
                        .await?;
                    return Ok(true);
                }
                let owner = sqlx::query(sql_file!($dir, "is_owner"))
                    .bind(&v.name)
                    .bind(&v.publisher)
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(any_owner || owner.is_some())
            }

            /// Records the version row; `false` when it exists.
            async fn insert_version(
                tx: &mut sqlx::Transaction<'_, $db>,
                v: &VersionInfo,
            ) -> Result<bool, StoreError> {
                let sv = v.manifest.semver();
                let manifest = serde_json::to_string(&v.manifest)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let done = sqlx::query(sql_file!($dir, "insert_version"))
                    .bind(&v.name)
                    .bind(&v.version)
                    .bind(sv.major as i64)
                    .bind(sv.minor as i64)
                    .bind(sv.patch as i64)
                    .bind(&v.sha256)
                    .bind(v.size as i64)
                    .bind(&v.signature)
                    .bind(manifest)
                    .bind(&v.publisher)
                    .bind(v.published_at)
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait]
        impl RegistryStore for $store {
            async fn insert(&self, v: &VersionInfo, any_owner: bool) -> Result<Insert, StoreError> {
                let mut tx = self.pool.begin().await?;
                if !Self::claim_package(&mut tx, v, any_owner).await? {
                    return Ok(Insert::NotOwner);
                }
                if !Self::insert_version(&mut tx, v).await? {
                    return Ok(Insert::Exists);
                }
                for f in v.manifest.functions.keys() {
                    sqlx::query(sql_file!($dir, "insert_function"))
                        .bind(f)
                        .bind(&v.name)
                        .bind(&v.version)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(Insert::Inserted)
            }

            async fn get(
                &self,
                name: &str,
                version: &str,
            ) -> Result<Option<VersionInfo>, StoreError> {
                let row: Option<VersionRow> = sqlx::query_as(sql_file!($dir, "version"))
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            /// Semver decides the order (pre-releases sort below their release).
            async fn versions(&self, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
                let rows = sqlx::query_as(sql_file!($dir, "versions"))
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(newest_first(versions_from(rows)?))
            }

            async fn packages(&self) -> Result<Vec<(String, u64, Option<String>)>, StoreError> {
                let names: Vec<(String, i64)> = sqlx::query_as(sql_file!($dir, "package_names"))
                    .fetch_all(&self.pool)
                    .await?;
                let mut out = Vec::with_capacity(names.len());
                for (name, n) in names {
                    let versions = self.versions(&name).await?;
                    let latest = versions.into_iter().find(|v| !v.yanked).map(|v| v.version);
                    out.push((name, n.max(0) as u64, latest));
                }
                Ok(out)
            }

            async fn set_yanked(
                &self,
                name: &str,
                version: &str,
                yanked: bool,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(sql_file!($dir, "set_yanked"))
                    .bind(name)
                    .bind(version)
                    .bind(yanked)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn with_function(&self, function: &str) -> Result<Vec<VersionInfo>, StoreError> {
                let rows = sqlx::query_as(sql_file!($dir, "with_function"))
                    .bind(function)
                    .bind(false)
                    .fetch_all(&self.pool)
                    .await?;
                versions_from(rows)
            }

            async fn all_digests(&self) -> Result<Vec<(String, String, String)>, StoreError> {
                Ok(sqlx::query_as(sql_file!($dir, "digests"))
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn owners(&self, name: &str) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(sql_file!($dir, "owners"))
                    .bind(name)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn add_owners(
                &self,
                name: &str,
                who: &[String],
                by: &str,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                for owner in who {
                    sqlx::query(sql_file!($dir, "add_owner"))
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

            async fn remove_owners(&self, name: &str, who: &[String]) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(sql_file!($dir, "lock_package"))
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                for owner in who {
                    sqlx::query(sql_file!($dir, "remove_owner"))
                        .bind(name)
                        .bind(owner)
                        .execute(&mut *tx)
                        .await?;
                }
                let left: i64 = sqlx::query_scalar(sql_file!($dir, "owner_count"))
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                if left == 0 {
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }
        }
    };
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

registry_store!(SqliteRegistry, sqlx::Sqlite, "sqlite");

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

registry_store!(PgRegistry, sqlx::Postgres, "postgres");
