//! JWT claims and roles.
use serde::{Deserialize, Serialize};

/// Issuer claim every crpc token carries.
pub const JWT_ISSUER: &str = "crpc";
/// Audience claim every crpc token carries.
pub const JWT_AUDIENCE: &str = "crpc";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits tasks and reads its own tasks.
    User,
    /// Pulls and answers tasks.
    Worker,
    /// Publishes packages to the registry.
    Publisher,
    /// Everything, every owner's tasks.
    Admin,
}

impl Role {
    /// The lowercase name used on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Worker => "worker",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "worker" => Ok(Role::Worker),
            "publisher" => Ok(Role::Publisher),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}` (expected user, worker, publisher or admin)"
            )),
        }
    }
}

/// The claims of a crpc JWT. All are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claims {
    /// Subject: the user or worker name; owner of the tasks a user submits.
    pub sub: String,
    /// What the token may do.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
    /// Issuer, always [`JWT_ISSUER`].
    pub iss: String,
    /// Audience, always [`JWT_AUDIENCE`].
    pub aud: String,
}
