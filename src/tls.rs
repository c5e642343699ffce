//! TLS material: the configured certificate, or a self-signed one generated on first start and
//! kept in the data dir so clients that pinned it keep working across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Where the certificate and key in use came from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generated: bool,
}

/// Loads (or first generates) the certificate and builds a rustls server config offering
/// `alpn` (e.g. `http/1.1`; none for XMPP STARTTLS).
pub fn server_config(
    config: &Config,
    alpn: &[&[u8]],
) -> anyhow::Result<(Arc<rustls::ServerConfig>, TlsFiles)> {
    let files = ensure_files(config)?;
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "{} does not match {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(server), files))
}

fn ensure_files(config: &Config) -> anyhow::Result<TlsFiles> {
    if !config.tls.cert.is_empty() {
        return Ok(TlsFiles {
            cert: PathBuf::from(&config.tls.cert),
            key: PathBuf::from(&config.tls.key),
            generated: false,
        });
    }
    let dir = config.server.data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok(TlsFiles {
            cert,
            key,
            generated: false,
        });
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !names.contains(&config.xmpp.domain) {
        names.push(config.xmpp.domain.clone());
    }
    let generated =
        rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate");
    Ok(TlsFiles {
        cert,
        key,
        generated: true,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("{} is not a PEM private key", path.display()))?
        .with_context(|| format!("{} holds no private key", path.display()))
}
