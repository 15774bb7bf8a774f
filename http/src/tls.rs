//! The HTTP client every crpc client builds on: rustls with the system's root certificates, plus
//! the certificates of `--ca-cert` (a private CA) once [`trust_ca_file`] loaded them.
use std::path::Path;
use std::sync::OnceLock;

static EXTRA_ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();

/// Trusts the PEM certificates in `path` for every client built afterwards in this process (the
/// first call wins: `crpc dev` runs a server and a processor in one process).
pub fn trust_ca_file(path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("--ca-cert {}: no PEM certificate", path.display()));
    }
    let _ = EXTRA_ROOTS.set(certs);
    Ok(())
}

/// A client builder with the roots above; callers add their timeouts.
pub fn client_builder() -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    for cert in EXTRA_ROOTS.get().into_iter().flatten() {
        b = b.add_root_certificate(cert.clone());
    }
    b
}
