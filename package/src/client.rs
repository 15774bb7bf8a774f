//! Registry HTTP client used by the task server (resolution at submit), the processor (downloads)
//! and the CLI (publish). Every download is verified before it is handed out.
use crpc_http::reqwest;
use serde::{Deserialize, Serialize};

use crate::manifest::Manifest;
use crate::verify::{self, TrustedKeys, VerifyError};

/// One published version, as the registry describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// sha256 of the archive, recorded at publish.
    pub sha256: String,
    /// Archive size, bytes.
    pub size: u64,
    /// Detached ed25519 signature (hex), if the publisher sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Yanked versions are skipped by resolution but still download by exact version.
    pub yanked: bool,
    /// ms since the Unix epoch.
    pub published_at: i64,
    /// Token subject that published it.
    pub publisher: String,
    /// The manifest.
    pub manifest: Manifest,
}

/// What went wrong talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer (down, refused, timed out).
    #[error("registry unreachable at {url}: {reason}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// The registry answered with an error body.
    #[error("registry answered {status} {code}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Error message.
        message: String,
    },
    /// The bytes did not verify.
    #[error("{0}")]
    Verify(#[from] VerifyError),
    /// The answer did not parse.
    #[error("registry answer did not parse: {0}")]
    Decode(String),
    /// A download was larger than the client accepts.
    #[error("the archive is larger than {limit} bytes; refused")]
    TooLarge {
        /// The cap, bytes.
        limit: u64,
    },
}

/// Largest archive a client downloads: the unpacked-size cap, since a registry never stores a
/// compressed archive larger than what it unpacks to be worth (and a hostile one must not fill
/// memory).
pub const MAX_DOWNLOAD_BYTES: u64 = 512 << 20;

impl ClientError {
    /// HTTP status of a registry error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A registry client.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: crpc_http::Client,
}

#[derive(Deserialize)]
struct FunctionsBody {
    packages: Vec<VersionInfo>,
}

impl From<crpc_http::Error> for ClientError {
    fn from(e: crpc_http::Error) -> Self {
        match e {
            crpc_http::Error::Unreachable { url, reason, .. } => {
                ClientError::Unreachable { url, reason }
            }
            crpc_http::Error::Status {
                status,
                code,
                message,
                ..
            } => ClientError::Status {
                status,
                code,
                message,
            },
            crpc_http::Error::Decode { reason, .. } => ClientError::Decode(reason),
            crpc_http::Error::Build(reason) => ClientError::Unreachable {
                url: String::new(),
                reason,
            },
        }
    }
}

impl RegistryClient {
    /// A client for `base` (e.g. `http://127.0.0.1:7701`) with an optional bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        let opts = crpc_http::Options {
            timeout: Some(std::time::Duration::from_secs(300)),
            ..Default::default()
        };
        RegistryClient {
            http: crpc_http::Client::new(base, token, opts).expect("HTTP client"),
        }
    }

    /// Replaces the token.
    pub fn with_token(self, token: Option<String>) -> Self {
        RegistryClient {
            http: self.http.with_token(token),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        self.http.base()
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, path)
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        Ok(self.http.send(rb).await?)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        Ok(self.http.json(rb).await?)
    }

    /// Highest non-yanked version of `name` matching the semver requirement `req`.
    pub async fn resolve(&self, name: &str, req: &str) -> Result<VersionInfo, ClientError> {
        let rb = self
            .req(
                reqwest::Method::GET,
                &format!("/v1/packages/{name}/resolve"),
            )
            .query(&[("req", req)]);
        self.json(rb).await
    }

    /// One exact version.
    pub async fn version(&self, name: &str, version: &str) -> Result<VersionInfo, ClientError> {
        self.json(self.req(
            reqwest::Method::GET,
            &format!("/v1/packages/{name}/{version}"),
        ))
        .await
    }

    /// The newest non-yanked version of every package that exports `function`.
    pub async fn packages_with_function(
        &self,
        function: &str,
    ) -> Result<Vec<VersionInfo>, ClientError> {
        let body: FunctionsBody = self
            .json(self.req(reqwest::Method::GET, &format!("/v1/functions/{function}")))
            .await?;
        Ok(body.packages)
    }

    /// Downloads the archive of `info` and verifies it (digest; signature with trusted keys)
    /// against what the registry recorded at publish. Nothing unverified is returned.
    pub async fn download_verified(
        &self,
        info: &VersionInfo,
        trusted: &TrustedKeys,
    ) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .send(self.req(
                reqwest::Method::GET,
                &format!("/v1/packages/{}/{}/archive", info.name, info.version),
            ))
            .await?;
        let bytes = self.read_capped(resp, MAX_DOWNLOAD_BYTES).await?;
        verify::verify(&bytes, &info.sha256, info.signature.as_deref(), trusted)?;
        Ok(bytes)
    }

    /// The body of `resp`, refused once it passes `limit` bytes (before, when it says so).
    async fn read_capped(
        &self,
        mut resp: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, ClientError> {
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(ClientError::TooLarge { limit });
        }
        let mut out = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| ClientError::Unreachable {
                url: self.base().to_string(),
                reason: crpc_http::describe(&e),
            })?;
            let Some(chunk) = chunk else { return Ok(out) };
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(ClientError::TooLarge { limit });
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// Publishes an archive (the manifest inside names the package and version).
    pub async fn publish(
        &self,
        name: &str,
        version: &str,
        archive: Vec<u8>,
        signature: Option<&str>,
    ) -> Result<VersionInfo, ClientError> {
        let mut rb = self
            .req(
                reqwest::Method::PUT,
                &format!("/v1/packages/{name}/{version}"),
            )
            .header("content-type", "application/gzip")
            .body(archive);
        if let Some(sig) = signature {
            rb = rb.header(SIGNATURE_HEADER, sig);
        }
        self.json(rb).await
    }
}

/// Body of `PUT` and `DELETE /v1/packages/{name}/owners`: token subjects to add or remove.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnersChange {
    /// Token subjects (1 to 32).
    pub owners: Vec<String>,
}

/// Answer of the owners routes.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Owners {
    /// The package.
    pub name: String,
    /// Its owners, sorted.
    pub owners: Vec<String>,
}

impl RegistryClient {
    /// The owners of a package.
    pub async fn owners(&self, name: &str) -> Result<Owners, ClientError> {
        self.json(self.req(reqwest::Method::GET, &format!("/v1/packages/{name}/owners")))
            .await
    }

    /// Adds (`add`) or removes owners; the owners afterwards.
    pub async fn change_owners(
        &self,
        name: &str,
        who: Vec<String>,
        add: bool,
    ) -> Result<Owners, ClientError> {
        let method = if add {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        let rb = self
            .req(method, &format!("/v1/packages/{name}/owners"))
            .json(&OwnersChange { owners: who });
        self.json(rb).await
    }
}

/// Header carrying the detached signature (hex) at publish and download.
pub const SIGNATURE_HEADER: &str = "x-crpc-signature";
/// Header carrying the archive's sha256 (hex) at download.
pub const SHA256_HEADER: &str = "x-crpc-sha256";

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Download or verification failed: nothing was written.
    #[error("{0}")]
    Fetch(#[from] ClientError),
    /// The archive was refused while unpacking: nothing was installed.
    #[error("{0}")]
    Unpack(#[from] crate::archive::ArchiveError),
}

impl RegistryClient {
    /// Downloads, verifies (digest; signature with trusted keys) and unpacks `info` into `dest`
    /// atomically. Nothing is written unless the bytes verified.
    pub async fn install_verified(
        &self,
        info: &VersionInfo,
        trusted: &TrustedKeys,
        dest: &std::path::Path,
        limits: &crate::archive::Limits,
    ) -> Result<crate::archive::Inspection, InstallError> {
        let bytes = self.download_verified(info, trusted).await?;
        Ok(crate::archive::unpack(&bytes, dest, limits)?)
    }
}
