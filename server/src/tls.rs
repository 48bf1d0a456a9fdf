//! TLS on both listeners (rustls with the ring provider) and the optional mTLS of the identity
//! provider.
//!
//! Everything is read and checked when the configuration is validated ([`TlsSettings::load`]),
//! before any port is bound: the certificate chain and the key parse, the key belongs to the
//! certificate, the key file is private to its owner, and the provider CA is a usable trust
//! anchor. Without a certificate both listeners stay plaintext (`make run` on loopback).
//!
//! With a provider CA, the gRPC listener asks every client for a certificate but does not require
//! one: a client that presents one must chain to that CA or the handshake fails, and a verified
//! certificate makes the caller the provider (`directory_service::ProviderToken`). Clients without
//! a certificate connect as before and use the bearer token. The HTTP tiles are public and never
//! ask for a client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::ConfigError;

/// A TLS handshake that has not finished by then is dropped, so a client that opens connections
/// and sends nothing holds a slot only this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most HTTP connections in their TLS handshake at once; more wait in the kernel's backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// Finished HTTP handshakes waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Validated TLS settings: the server's certificate and key, and the provider CA of mTLS.
#[derive(Clone)]
pub struct TlsSettings {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    provider_ca_pem: Option<Vec<u8>>,
    http: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("key", &"<redacted>")
            .field("provider_mtls", &self.provider_mtls())
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The one crypto provider of every TLS configuration here. It is also installed as the process
/// default, which tonic's own rustls configurations use.
fn provider() -> Arc<CryptoProvider> {
    let _ = ring::default_provider().install_default();
    Arc::new(ring::default_provider())
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(field, format!("{}: {e}", path.display())))
}

/// The certificates of a PEM file (at least one).
fn certificates(
    field: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, format!("{}: not a PEM file: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(
            field,
            format!("{}: holds no CERTIFICATE block", path.display()),
        ));
    }
    Ok(certs)
}

/// A private key file must be readable by its owner only, like the log's signing key.
fn check_private(field: &'static str, path: &Path) -> Result<(), ConfigError> {
    let meta =
        std::fs::metadata(path).map_err(|e| invalid(field, format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(invalid(
                field,
                format!(
                    "{} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
    }
    let _ = meta;
    Ok(())
}

impl TlsSettings {
    /// Reads and checks the certificate chain, its key and the optional provider CA (all PEM).
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        provider_ca_file: Option<&Path>,
    ) -> Result<TlsSettings, ConfigError> {
        let cert_pem = read("tls_cert_file", cert_file)?;
        let certs = certificates("tls_cert_file", cert_file, &cert_pem)?;
        check_private("tls_key_file", key_file)?;
        let key_pem = read("tls_key_file", key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            invalid(
                "tls_key_file",
                format!(
                    "{}: no PKCS#8, PKCS#1 or SEC1 private key in PEM: {e}",
                    key_file.display()
                ),
            )
        })?;
        let provider = provider();
        let http = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("tls_cert_file", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => invalid(
                    "tls_key_file",
                    format!(
                        "{} is not the key of the certificate in {}",
                        key_file.display(),
                        cert_file.display()
                    ),
                ),
                other => invalid("tls_key_file", format!("{}: {other}", key_file.display())),
            })?;
        let mut http = http;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];

        let provider_ca_pem = match provider_ca_file {
            None => None,
            Some(path) => {
                let field = "provider_client_ca_file";
                let pem = read(field, path)?;
                let mut roots = RootCertStore::empty();
                for cert in certificates(field, path, &pem)? {
                    roots.add(cert).map_err(|e| {
                        invalid(field, format!("{}: not a usable CA: {e}", path.display()))
                    })?;
                }
                // The verifier tonic builds from the same PEM, built once here to fail early.
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| invalid(field, format!("{}: {e}", path.display())))?;
                Some(pem)
            }
        };
        Ok(TlsSettings {
            cert_pem,
            key_pem,
            provider_ca_pem,
            http: Arc::new(http),
        })
    }

    /// Whether a client certificate from the provider CA identifies the provider.
    pub fn provider_mtls(&self) -> bool {
        self.provider_ca_pem.is_some()
    }

    fn grpc_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.provider_ca_pem {
            // Optional: everyone else connects without a certificate and uses the token.
            Some(ca) => config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true),
            None => config,
        }
    }
}

/// The gRPC server builder: over TLS when `tls` is given.
pub fn grpc_server(tls: Option<&TlsSettings>) -> anyhow::Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder();
    Ok(match tls {
        Some(tls) => {
            provider();
            builder.tls_config(tls.grpc_config())?
        }
        None => builder,
    })
}

/// A connection of the HTTP listener, plaintext or TLS.
pub trait HttpIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> HttpIo for T {}

/// The HTTP tiles listener: the TCP listener itself, or TLS connections whose handshakes run in
/// their own tasks (so a slow or silent client never holds up the others).
#[derive(Debug)]
pub enum HttpListener {
    Plain(TcpListener),
    Tls {
        local_addr: SocketAddr,
        accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    },
}

/// The HTTP listener over `listener`: TLS when `tls` is given.
pub fn http_listener(listener: TcpListener, tls: Option<&TlsSettings>) -> HttpListener {
    let Some(tls) = tls else {
        return HttpListener::Plain(listener);
    };
    let local_addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let acceptor = TlsAcceptor::from(tls.http.clone());
    let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            // The HTTP server dropped its listener (shutdown): stop accepting, free the port.
            let permit = tokio::select! {
                _ = tx.closed() => return,
                permit = pending.clone().acquire_owned() => permit.expect("never closed"),
            };
            let (tcp, peer) = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, as axum does.
                        tracing::warn!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "HTTP TLS handshake failed"),
                    Err(_) => tracing::debug!("HTTP TLS handshake timed out"),
                }
            });
        }
    });
    HttpListener::Tls {
        local_addr,
        accepted,
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Box<dyn HttpIo>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self {
            HttpListener::Plain(listener) => {
                let (stream, peer) = axum::serve::Listener::accept(listener).await;
                (Box::new(stream), peer)
            }
            HttpListener::Tls { accepted, .. } => match accepted.recv().await {
                Some((stream, peer)) => (Box::new(stream), peer),
                // The accept task never ends while this receiver lives.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            HttpListener::Plain(listener) => listener.local_addr(),
            HttpListener::Tls { local_addr, .. } => Ok(*local_addr),
        }
    }
}
