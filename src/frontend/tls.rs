//! Client TLS: a rustls server config from the PEM files named in the config.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::config::TlsFiles;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file holds no private key.
    #[error("{0} contains no private key")]
    NoKey(PathBuf),
    /// rustls refused the certificate/key pair.
    #[error("invalid TLS certificate or key: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// Builds the acceptor; ALPN `postgresql` is offered for direct TLS connections (PostgreSQL 17+).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(&cert_pem[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: files.cert.clone(),
            source,
        })?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(&key_pem[..]))
        .map_err(|source| TlsError::Read {
            path: files.key.clone(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(files.key.clone()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
