//! Submit-time resolution against the registry: a task's `version` requirement becomes the exact
//! version stored on the task, the function must exist in that version's manifest, and the
//! arguments must fit its typed signature. Positive answers are cached briefly so a batch of
//! 10,000 tasks of one package costs one lookup; a registry that does not answer is a 503, and
//! nothing is queued.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crpc_package::client::{ClientError, RegistryClient, VersionInfo};
use crpc_service::auth::{mint, Secret};
use crpc_service::error::ApiError;
use serde_json::json;
use task_api::{Resources, Role, TaskSpec};

use crate::cost::CostAt;

/// How long a resolution is reused.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Lifetime of the token the server mints for itself; renewed at half-life.
const TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);

/// What a task resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// The package's resources, for tasks that name none.
    pub resources: Resources,
    /// Where the task's cost measures are, by the function's signature.
    pub cost_at: CostAt,
    /// The function's cap, when its manifest limits it (`max_concurrent`, `rate_per_s`).
    pub cap: Option<crate::caps::CapLimit>,
}

enum Auth {
    Fixed(Option<String>),
    Minted {
        secret: Secret,
        token: Mutex<(Instant, String)>,
    },
}

/// Registry lookups with a short cache.
pub struct Resolver {
    client: RegistryClient,
    auth: Auth,
    cache: TtlCache<VersionInfo>,
    functions: TtlCache<Vec<VersionInfo>>,
}

/// Entries a resolver cache holds at most: users choose the keys (any requirement string of
/// any package), so the caches must not grow with them.
const CACHE_ENTRIES: usize = 4096;

/// A small map of answers younger than [`CACHE_TTL`], bounded by [`CACHE_ENTRIES`].
struct TtlCache<V>(Mutex<HashMap<String, (Instant, V)>>);

impl<V: Clone> TtlCache<V> {
    fn new() -> Self {
        TtlCache(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: &str) -> Option<V> {
        let map = self.0.lock().expect("cache lock");
        map.get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, v: V) {
        let mut map = self.0.lock().expect("cache lock");
        if map.len() >= CACHE_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), v));
    }
}

impl Resolver {
    /// Talks to `url` with `token`, or with tokens minted from `secret` (a shared JWT secret).
    pub fn new(url: &str, token: Option<String>, secret: Option<Secret>) -> Resolver {
        let auth = match (token, secret) {
            (Some(t), _) => Auth::Fixed(Some(t)),
            (None, Some(secret)) => Auth::Minted {
                secret,
                token: Mutex::new((Instant::now() - TOKEN_TTL, String::new())),
            },
            (None, None) => Auth::Fixed(None),
        };
        Resolver {
            client: RegistryClient::new(url, None),
            auth,
            cache: TtlCache::new(),
            functions: TtlCache::new(),
        }
    }

    fn client(&self) -> RegistryClient {
        let token = match &self.auth {
            Auth::Fixed(t) => t.clone(),
            Auth::Minted { secret, token } => {
                let mut t = token.lock().expect("token lock");
                if t.0.elapsed() > TOKEN_TTL / 2 {
                    if let Ok(fresh) = mint(secret, "task-server", Role::Worker, TOKEN_TTL) {
                        *t = (Instant::now(), fresh);
                    }
                }
                Some(t.1.clone())
            }
        };
        self.client.clone().with_token(token)
    }

    /// Resolves the task's package and version and checks its function and arguments.
    /// `prefix` is prepended to field names (`tasks[3].`).
    pub async fn resolve(&self, spec: &TaskSpec, prefix: &str) -> Result<Resolved, ApiError> {
        let field = |f: &str| format!("{prefix}{f}");
        let info = match &spec.package {
            Some(p) => {
                self.version(p, spec.version.as_deref().unwrap_or("*"), prefix)
                    .await?
            }
            None => {
                let found = self.with_function(&spec.function).await?;
                match found.len() {
                    0 => {
                        return Err(ApiError::invalid(
                            &field("function"),
                            format!(
                                "no published package exports a function named `{}`",
                                spec.function
                            ),
                        ))
                    }
                    1 => {
                        let only = &found[0];
                        match &spec.version {
                            Some(req) => self.version(&only.name, req, prefix).await?,
                            None => only.clone(),
                        }
                    }
                    _ => {
                        let names: Vec<String> = found.iter().map(|v| v.name.clone()).collect();
                        return Err(ApiError::invalid(
                            &field("package"),
                            format!(
                                "`{}` is exported by several packages ({}); name the package",
                                spec.function,
                                names.join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        let Some(sig) = info.manifest.functions.get(&spec.function) else {
            let have: Vec<&str> = info.manifest.functions.keys().map(String::as_str).collect();
            return Err(ApiError::invalid(
                &field("function"),
                format!(
                    "{}@{} has no function `{}` (it has: {})",
                    info.name,
                    info.version,
                    spec.function,
                    have.join(", ")
                ),
            ));
        };
        sig.check_where(
            &spec.function,
            &spec.args,
            &spec.kwargs,
            &crate::graph::is_ref,
        )
        .map_err(|e| {
            ApiError::invalid(&field(&e.field), e.message.clone())
                .with_details(json!({"field": field(&e.field), "argument": e.argument}))
        })?;
        Ok(Resolved {
            package: info.name.clone(),
            version: info.version.clone(),
            resources: info.manifest.resources.clone(),
            cost_at: CostAt::of(Some(sig), spec.args.len()),
            cap: (sig.max_concurrent.is_some() || sig.rate_per_s.is_some()).then(|| {
                crate::caps::CapLimit {
                    key: crate::caps::function_key(&info.name, &spec.function),
                    max_running: sig.max_concurrent,
                    rate_per_s: sig.rate_per_s,
                }
            }),
        })
    }

    async fn version(
        &self,
        package: &str,
        req: &str,
        prefix: &str,
    ) -> Result<VersionInfo, ApiError> {
        let key = format!("{package}\0{req}");
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let v = self
            .client()
            .resolve(package, req)
            .await
            .map_err(|e| match &e {
                ClientError::Status { code, .. } if code == "no_match" => {
                    ApiError::invalid(&format!("{prefix}version"), registry_message(&e))
                }
                _ if e.status() == Some(404) => {
                    ApiError::invalid(&format!("{prefix}package"), registry_message(&e))
                }
                _ if e.status() == Some(422) => {
                    ApiError::invalid(&format!("{prefix}version"), registry_message(&e))
                }
                _ => unavailable(e),
            })?;
        self.cache.put(key, v.clone());
        Ok(v)
    }

    async fn with_function(&self, function: &str) -> Result<Vec<VersionInfo>, ApiError> {
        if let Some(v) = self.functions.get(function).filter(|v| !v.is_empty()) {
            return Ok(v);
        }
        let v = self
            .client()
            .packages_with_function(function)
            .await
            .map_err(unavailable)?;
        self.functions.put(function.to_string(), v.clone());
        Ok(v)
    }
}

fn registry_message(e: &ClientError) -> String {
    match e {
        ClientError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn unavailable(e: ClientError) -> ApiError {
    let msg = match e.status() {
        Some(401) | Some(403) => format!(
            "the registry refused the task server's token ({}); give the server --registry-token or the registry the same JWT secret",
            registry_message(&e)
        ),
        _ => format!("package registry unavailable: {e}; nothing was queued, retry later"),
    };
    ApiError::new(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "registry_unavailable",
        msg,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_stay_bounded_whatever_the_keys() {
        let cache = TtlCache::new();
        for i in 0..3 * CACHE_ENTRIES {
            cache.put(format!("pkg\0^{i}"), i);
        }
        assert!(cache.0.lock().unwrap().len() <= CACHE_ENTRIES);
        assert_eq!(
            cache.get(&format!("pkg\0^{}", 3 * CACHE_ENTRIES - 1)),
            Some(3 * CACHE_ENTRIES - 1)
        );
    }
}
