//! What every registry handler shares, and the domain rules of publishing and resolving.
use std::sync::Arc;

use crpc_package::archive::{self, ArchiveError, Limits};
use crpc_package::client::{Owners, VersionInfo};
use crpc_package::manifest::valid_package_name;
use crpc_package::verify::{parse_signature, sha256_hex};
use crpc_service::auth::Caller;
use crpc_service::error::ApiError;
use serde_json::json;

use crate::blobs::{BlobError, Blobs};
use crate::store::{Insert, RegistryStore, StoreError};

/// Shared state.
pub struct Registry {
    /// Metadata.
    pub store: Arc<dyn RegistryStore>,
    /// Archives.
    pub blobs: Blobs,
    /// Archive caps.
    pub limits: Limits,
}

/// Store failures are the registry's fault: 500 with the details in the log.
pub fn store_err(e: StoreError) -> ApiError {
    ApiError::internal(e)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Validates a package name from a path (422 naming `name`).
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_package_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!("`{name}` is not a package name: [a-z0-9][a-z0-9_-]{{0,63}}"),
        ))
    }
}

impl Registry {
    /// 403 `not_owner` unless `caller` is an admin or owns `name` (a name nobody has published
    /// yet is free: its first publisher will own it).
    pub async fn check_owner(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        if caller.is_admin() {
            return Ok(());
        }
        let owners = self.store.owners(name).await.map_err(store_err)?;
        if owners.is_empty() || owners.contains(&caller.sub) {
            return Ok(());
        }
        Err(not_owner(name, &caller.sub, &owners))
    }

    /// Validates and stores a new version; only the package's owners (or an admin) may.
    pub async fn publish(
        &self,
        caller: &Caller,
        name: &str,
        version: &str,
        bytes: Vec<u8>,
        signature: Option<String>,
    ) -> Result<VersionInfo, ApiError> {
        check_name(name)?;
        let publisher = caller.sub.as_str();
        self.check_owner(caller, name).await?;
        let parsed = semver::Version::parse(version).map_err(|e| {
            ApiError::invalid(
                "version",
                format!("`{version}` is not a semver version: {e}"),
            )
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "bad_archive",
                "the body must be the package's .tar.gz",
            ));
        }
        if let Some(sig) = &signature {
            parse_signature(sig)
                .map_err(|e| ApiError::invalid("signature", format!("x-crpc-signature: {e}")))?;
        }
        if self
            .store
            .get(name, version)
            .await
            .map_err(store_err)?
            .is_some()
        {
            return Err(exists(name, version));
        }
        let limits = self.limits;
        let (bytes, inspected) = tokio::task::spawn_blocking(move || {
            let r = archive::inspect(&bytes, &limits);
            (bytes, r)
        })
        .await
        .map_err(ApiError::internal)?;
        let inspected = inspected.map_err(archive_error)?;
        let m = inspected.manifest;
        if m.name != name {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "crpc.toml names package `{}`, but it is published as `{name}`",
                    m.name
                ),
            ));
        }
        if m.semver() != parsed {
            return Err(ApiError::invalid(
                "version",
                format!(
                    "crpc.toml says version {}, but it is published as {version}",
                    m.version
                ),
            ));
        }
        let sha256 = sha256_hex(&bytes);
        let info = VersionInfo {
            name: name.to_string(),
            version: version.to_string(),
            sha256: sha256.clone(),
            size: bytes.len() as u64,
            signature,
            yanked: false,
            published_at: now_ms(),
            publisher: publisher.to_string(),
            manifest: m,
        };
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.put(&sha256, &bytes))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        match self
            .store
            .insert(&info, caller.is_admin())
            .await
            .map_err(store_err)?
        {
            Insert::Inserted => {}
            Insert::Exists => return Err(exists(name, version)),
            Insert::NotOwner => {
                let owners = self.store.owners(name).await.map_err(store_err)?;
                return Err(not_owner(name, publisher, &owners));
            }
        }
        tracing::info!(name, version, sha256 = %info.sha256, size = info.size, publisher, "published");
        Ok(info)
    }

    /// The owners of a published package, or 404.
    pub async fn owners(&self, name: &str) -> Result<Owners, ApiError> {
        let owners = self.store.owners(name).await.map_err(store_err)?;
        if owners.is_empty() {
            return Err(ApiError::not_found(format!("no package named `{name}`")));
        }
        Ok(Owners {
            name: name.to_string(),
            owners,
        })
    }

    /// Adds or removes owners of a published package (owners and admins only); the owners
    /// afterwards. Removing every owner is refused (409 `last_owner`).
    pub async fn change_owners(
        &self,
        caller: &Caller,
        name: &str,
        who: &[String],
        add: bool,
    ) -> Result<Owners, ApiError> {
        check_name(name)?;
        let bad = |s: &String| s.is_empty() || s.len() > 128 || s.chars().any(char::is_control);
        if who.is_empty() || who.len() > 32 || who.iter().any(bad) {
            return Err(ApiError::invalid(
                "owners",
                "owners must list 1 to 32 token subjects of 1-128 characters",
            ));
        }
        self.owners(name).await?;
        self.check_owner(caller, name).await?;
        let store = &self.store;
        if add {
            store
                .add_owners(name, who, &caller.sub)
                .await
                .map_err(store_err)?;
        } else if !store.remove_owners(name, who).await.map_err(store_err)? {
            return Err(ApiError::conflict(
                "last_owner",
                format!("that would leave `{name}` without owners; add another owner first"),
            ));
        }
        tracing::info!(name, add, owners = ?who, by = %caller.sub, "owners changed");
        self.owners(name).await
    }

    /// One version or 404.
    pub async fn version(&self, name: &str, version: &str) -> Result<VersionInfo, ApiError> {
        self.store
            .get(name, version)
            .await
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found(format!("{name}@{version} is not published")))
    }

    /// Highest non-yanked version matching `req`.
    pub async fn resolve(&self, name: &str, req: &str) -> Result<VersionInfo, ApiError> {
        let parsed = semver::VersionReq::parse(req).map_err(|e| {
            ApiError::invalid("req", format!("`{req}` is not a semver requirement: {e}"))
        })?;
        let versions = self.store.versions(name).await.map_err(store_err)?;
        if versions.is_empty() {
            return Err(ApiError::not_found(format!("no package named `{name}`")));
        }
        versions
            .into_iter()
            .filter(|v| !v.yanked && parsed.matches(&v.manifest.semver()))
            .max_by(|a, b| a.manifest.semver().cmp(&b.manifest.semver()))
            .ok_or_else(|| {
                ApiError::new(
                    actix_web::http::StatusCode::NOT_FOUND,
                    "no_match",
                    format!("no published, non-yanked version of `{name}` matches `{req}`"),
                )
            })
    }

    /// The archive bytes, verified against their digest.
    pub async fn archive(&self, info: &VersionInfo) -> Result<Vec<u8>, ApiError> {
        let blobs = self.blobs.clone();
        let sha = info.sha256.clone();
        tokio::task::spawn_blocking(move || blobs.get(&sha))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                BlobError::Corrupt(_) | BlobError::Missing(_) => {
                    tracing::error!(name = %info.name, version = %info.version, error = %e, "archive failed verification");
                    ApiError::new(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, "blob_corrupt", format!("the stored archive of {}@{} failed verification; the operator must restore it", info.name, info.version))
                }
                other => ApiError::internal(other),
            })
    }

    /// Re-verifies every stored archive; logs the bad ones. Returns how many are bad.
    pub async fn verify_all(&self) -> Result<usize, StoreError> {
        let mut bad = 0;
        for (name, version, sha) in self.store.all_digests().await? {
            let blobs = self.blobs.clone();
            let sha2 = sha.clone();
            let ok = tokio::task::spawn_blocking(move || blobs.get(&sha2))
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false);
            if !ok {
                bad += 1;
                tracing::error!(%name, %version, %sha, "stored archive is missing or corrupt");
            }
        }
        Ok(bad)
    }
}

fn not_owner(name: &str, who: &str, owners: &[String]) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "not_owner",
        format!(
            "`{who}` does not own package `{name}` (owners: {}); an owner can add you with `crpc owners {name} --add {who}`",
            owners.join(", ")
        ),
    )
    .with_details(json!({"owners": owners}))
}

fn exists(name: &str, version: &str) -> ApiError {
    ApiError::conflict(
        "version_exists",
        format!(
            "{name}@{version} is already published; versions are immutable, publish a new version"
        ),
    )
}

fn archive_error(e: ArchiveError) -> ApiError {
    match &e {
        ArchiveError::Manifest(m) => ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_manifest",
            format!("crpc.toml: {m}"),
        )
        .with_details(json!({"field": m.field})),
        ArchiveError::NoManifest => ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_manifest",
            e.to_string(),
        )
        .with_details(json!({"field": "crpc.toml"})),
        ArchiveError::Corrupt(_) => ApiError::bad_request("bad_archive", e.to_string()),
        ArchiveError::Io(_) => ApiError::internal(e),
        _ => ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "bad_archive",
            e.to_string(),
        )
        .with_details(json!({"entry": e.entry()})),
    }
}
