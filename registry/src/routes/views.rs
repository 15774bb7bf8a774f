//! The registry's response bodies, typed (and so in its OpenAPI document).
use crpc_package::client::{Owners, VersionInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/packages`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PackageList {
    /// Always true.
    pub success: bool,
    /// Every package, by name.
    pub packages: Vec<PackageSummary>,
}

/// One package in the list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PackageSummary {
    /// Package name.
    pub name: String,
    /// Versions published.
    pub versions: u64,
    /// Newest version that is not yanked (null when every version is).
    pub latest: Option<String>,
}

/// `GET /v1/packages/{name}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PackageVersions {
    /// Always true.
    pub success: bool,
    /// Package name.
    pub name: String,
    /// Every version, newest first.
    pub versions: Vec<VersionInfo>,
}

/// One version (publish, get, resolve).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionResponse {
    /// Always true.
    pub success: bool,
    /// The version.
    #[serde(flatten)]
    pub version: VersionInfo,
}

/// The owners routes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OwnersResponse {
    /// Always true.
    pub success: bool,
    /// The package and its owners.
    #[serde(flatten)]
    pub owners: Owners,
}

/// `GET /v1/functions/{function}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionPackages {
    /// Always true.
    pub success: bool,
    /// The function asked for.
    pub function: String,
    /// The newest non-yanked version of each package that exports it.
    pub packages: Vec<VersionInfo>,
}

/// `POST /v1/packages/{name}/{version}/yank`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct YankResponse {
    /// Always true.
    pub success: bool,
    /// Package.
    pub name: String,
    /// Version.
    pub version: String,
    /// The flag now.
    pub yanked: bool,
}
