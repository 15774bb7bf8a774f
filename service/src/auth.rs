//! JWT authentication: HS256 tokens with `sub, role, exp, iss, aud`, a secret kept in the data
//! directory (mode 0600) unless given, and extractors that enforce the role of each route group.
use std::future::{ready, Ready};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use task_api::{Claims, Role, JWT_AUDIENCE, JWT_ISSUER};

use crate::error::ApiError;

/// The HMAC secret. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The secret from `env` text, a file, or `DATA_DIR/jwt_secret` (created on first start).
    pub fn load(
        inline: Option<&str>,
        file: Option<&Path>,
        data_dir: &Path,
    ) -> anyhow::Result<Secret> {
        if let Some(s) = inline.filter(|s| !s.trim().is_empty()) {
            return Ok(Secret(s.trim().as_bytes().to_vec()));
        }
        let path = match file {
            Some(f) => f.to_path_buf(),
            None => data_dir.join("jwt_secret"),
        };
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Ok(Secret(s.trim().as_bytes().to_vec())),
            Ok(_) => anyhow::bail!("JWT secret file {} is empty", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => {
                std::fs::create_dir_all(data_dir)?;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let text = hex::encode(bytes);
                write_private(&path, &text)?;
                tracing::info!(path = %path.display(), "generated a new JWT secret");
                Ok(Secret(text.into_bytes()))
            }
            Err(e) => anyhow::bail!("cannot read JWT secret file {}: {e}", path.display()),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Seconds since the Unix epoch.
fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints a token.
pub fn mint(
    secret: &Secret,
    sub: &str,
    role: Role,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    let now = now_s();
    let claims = Claims {
        sub: sub.to_string(),
        role,
        exp: now + ttl.as_secs(),
        iat: now,
        iss: JWT_ISSUER.to_string(),
        aud: JWT_AUDIENCE.to_string(),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&secret.0),
    )?)
}

/// How requests are authenticated.
pub enum Authenticator {
    /// Verify HS256 JWTs.
    Jwt {
        /// Verification key.
        key: DecodingKey,
        /// Required claims, issuer, audience, algorithm.
        validation: Box<Validation>,
    },
    /// `--no-auth`: everyone is `admin` named `anonymous`.
    Disabled,
}

impl Authenticator {
    /// Verifies with `secret`.
    pub fn jwt(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[JWT_AUDIENCE]);
        validation.set_issuer(&[JWT_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Authenticator::Jwt {
            key: DecodingKey::from_secret(&secret.0),
            validation: Box::new(validation),
        }
    }

    fn verify(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let (key, validation) = match self {
            Authenticator::Disabled => {
                return Ok(Caller {
                    sub: "anonymous".into(),
                    role: Role::Admin,
                })
            }
            Authenticator::Jwt { key, validation } => (key, validation),
        };
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized("missing bearer token (Authorization: Bearer <jwt>)")
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <jwt>`")
            })?;
        let data = decode::<Claims>(token, key, validation).map_err(|e| {
            ApiError::unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".to_string(),
                ErrorKind::ImmatureSignature => "token is not valid yet (nbf)".to_string(),
                ErrorKind::InvalidSignature => "token signature is not valid".to_string(),
                ErrorKind::InvalidAudience => "token audience is not crpc".to_string(),
                ErrorKind::InvalidIssuer => "token issuer is not crpc".to_string(),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    "token algorithm is not accepted".to_string()
                }
                ErrorKind::MissingRequiredClaim(c) => format!("token lacks the `{c}` claim"),
                _ => format!("token is not valid: {e}"),
            })
        })?;
        Ok(Caller {
            sub: data.claims.sub,
            role: data.claims.role,
        })
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token subject.
    pub sub: String,
    /// Token role.
    pub role: Role,
}

impl Caller {
    /// Admins see every owner's tasks.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The owner filter for reads: `None` for admins.
    pub fn owner_filter(&self) -> Option<String> {
        (!self.is_admin()).then(|| self.sub.clone())
    }

    /// Whether this caller may see a task owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.is_admin() || self.sub == owner
    }
}

fn extract(req: &HttpRequest, allowed: &[Role], what: &str) -> Result<Caller, ApiError> {
    let auth = req
        .app_data::<web::Data<Arc<Authenticator>>>()
        .ok_or_else(|| ApiError::unavailable("authentication is not configured"))?;
    let caller = auth.verify(req)?;
    if let Some(limits) = req.app_data::<web::Data<crate::limits::Limits>>() {
        limits.check(&caller)?;
    }
    if caller.role == Role::Admin || allowed.contains(&caller.role) {
        Ok(caller)
    } else {
        Err(ApiError::forbidden(format!(
            "a {} token cannot use {what} routes (it needs one of: {}admin)",
            caller.role.as_str(),
            allowed
                .iter()
                .map(|r| format!("{}, ", r.as_str()))
                .collect::<String>()
        )))
    }
}

/// A caller allowed to publish and yank packages (publisher or admin).
pub struct PublisherCaller(pub Caller);
/// Any authenticated caller (registry reads).
pub struct AnyCaller(pub Caller);

impl FromRequest for PublisherCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req, &[Role::Publisher], "publishing").map(PublisherCaller))
    }
}

impl FromRequest for AnyCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req, &[Role::User, Role::Worker, Role::Publisher], "read").map(AnyCaller))
    }
}

/// An admin (operator routes: `/metrics`).
pub struct AdminCaller(pub Caller);

impl FromRequest for AdminCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req, &[], "operator").map(AdminCaller))
    }
}

/// A caller allowed on `/user` routes (user or admin).
pub struct UserCaller(pub Caller);
/// A caller allowed on `/worker` routes (worker or admin).
pub struct WorkerCaller(pub Caller);

impl FromRequest for UserCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req, &[Role::User], "/user").map(UserCaller))
    }
}

impl FromRequest for WorkerCaller {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(extract(req, &[Role::Worker], "/worker").map(WorkerCaller))
    }
}
