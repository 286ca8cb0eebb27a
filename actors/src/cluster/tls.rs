//! TLS on cluster links, through the tokio-rustls that ractor_cluster already uses: the learner presents a
//! certificate (`--cluster-tls-cert`, `--cluster-tls-key`), a node verifies it against the CA it is told
//! to trust (`node --tls-ca`). The cookie still decides who may join; TLS makes the link private.

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Every PEM certificate of `path` (at least one); errors name `flag` and the file.
fn read_certs(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{flag} {}: no PEM certificate in it", path.display());
    Ok(certs)
}

/// The learner's side: its certificate chain and private key (PEM).
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let certs = read_certs(cert, "--cluster-tls-cert")?;
    let pem = std::fs::read(key).with_context(|| format!("--cluster-tls-key {}", key.display()))?;
    let key_der =
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| anyhow::anyhow!("--cluster-tls-key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .context("--cluster-tls-cert / --cluster-tls-key: the key does not match the certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A node's side: trust the certificates of `ca`, and check the learner's certificate for `server_name`
/// (default: the host part of `join`).
pub fn connector(
    ca: &Path,
    server_name: Option<&str>,
    join: &str,
) -> anyhow::Result<(tokio_rustls::TlsConnector, ServerName<'static>)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca, "--tls-ca")? {
        roots.add(cert).with_context(|| format!("--tls-ca {}: not a usable CA certificate", ca.display()))?;
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let host = server_name.map_or_else(|| host_of(join).to_string(), str::to_string);
    let name =
        ServerName::try_from(host.as_str()).map_err(|e| anyhow::anyhow!("--tls-server-name {host}: {e}"))?.to_owned();
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// The host of `HOST:PORT` (`[v6]:PORT` too).
fn host_of(join: &str) -> &str {
    join.rsplit_once(':').map_or(join, |(h, _)| h).trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    #[test]
    fn the_test_certificates_load_and_bad_files_are_named() {
        acceptor(&fixture("cert.pem"), &fixture("key.pem")).expect("acceptor");
        let (_, name) = connector(&fixture("ca.pem"), None, "127.0.0.1:7400").expect("connector");
        assert_eq!(format!("{name:?}"), format!("{:?}", ServerName::try_from("127.0.0.1").expect("ip")));
        let err =
            acceptor(&fixture("key.pem"), &fixture("key.pem")).err().expect("a key is no certificate").to_string();
        assert!(err.contains("--cluster-tls-cert") && err.contains("no PEM certificate"), "{err}");
        let err = connector(Path::new("/nonexistent/ca.pem"), None, "h:1").err().expect("no such file");
        let err = format!("{err:#}");
        assert!(err.contains("--tls-ca /nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn the_host_of_a_join_address() {
        assert_eq!(host_of("10.0.0.1:7400"), "10.0.0.1");
        assert_eq!(host_of("learner.lan:7400"), "learner.lan");
        assert_eq!(host_of("[::1]:7400"), "::1");
    }
}
