//! TLS for `wss://` (the `tls` feature): the settings, [`TlsConfig`], and
//! the server side of the TLS handshake, by rustls with its ring crypto
//! provider through futures-rustls.
//!
//! The handshake runs inside the upgrade timeout (the caller's); rustls
//! bounds its buffers. A peer that speaks anything but TLS fails the
//! handshake with an error and is dropped by the caller. This module never
//! reads the HTTP request and never logs key material.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use futures_rustls::rustls::pki_types::pem::{self, PemObject};
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, ServerConfig};
use futures_rustls::TlsAcceptor;

use super::stream::Stream;
use crate::error::{Error, Result};
use crate::rt::TcpStream;

/// The one application protocol Wharf speaks over TLS (ALPN).
const HTTP_1_1: &[u8] = b"http/1.1";

/// TLS settings for [`Server::tls`](crate::Server::tls): a certificate
/// chain and its private key, or a rustls [`ServerConfig`] built by the
/// application. Built with rustls's ring provider; rustls is re-exported
/// as [`wharf::rustls`](crate::rustls) so that a `ServerConfig` built by
/// the application is of the version Wharf uses.
///
/// ALPN offers `http/1.1` (a browser must not pick HTTP/2 for a
/// WebSocket upgrade).
///
/// **Reloading without a restart.** A `TlsConfig` is a shared handle:
/// keep a clone, and [`reload_pem_files`](Self::reload_pem_files) (or
/// [`reload_rustls`](Self::reload_rustls)) swaps the configuration for
/// every handshake from then on, for example on `SIGHUP` or when a
/// certificate manager renews the files. Connections already open keep
/// the session they have. A reload that fails leaves the current
/// configuration in place.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> wharf::Result<()> {
/// let tls = wharf::TlsConfig::from_pem_files("cert.pem", "key.pem")?;
/// let listening = wharf::Server::new().tls(tls.clone()).bind("0.0.0.0:443").await?;
/// // Later, when the certificate was renewed:
/// tls.reload_pem_files("cert.pem", "key.pem")?;
/// # drop(listening); Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alpn: Vec<String> = self
            .config()
            .alpn_protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        f.debug_struct("TlsConfig")
            .field("alpn", &alpn)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads a certificate chain (PEM, the server's certificate first, then
    /// its intermediates) and its private key (PEM: PKCS#8, PKCS#1 or
    /// SEC1) and builds a rustls configuration with the ring provider,
    /// TLS 1.2 and 1.3, no client certificates, and ALPN `http/1.1`.
    ///
    /// Fails with [`Error::Config`] (`setting` `"tls"`) naming the file
    /// when a file cannot be read, holds no certificate or key, or the key
    /// does not fit the certificate; the error never quotes the key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> wharf::Result<()> {
    /// let tls = wharf::TlsConfig::from_pem_files("/etc/wharf/fullchain.pem", "/etc/wharf/key.pem")?;
    /// let server = wharf::Server::new().tls(tls);
    /// # drop(server); Ok(()) }
    /// ```
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self> {
        let config = load(cert.as_ref(), key.as_ref())?;
        Ok(TlsConfig {
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Uses a rustls configuration built by the application (client
    /// certificates, a certificate resolver for SNI, other cipher suites).
    /// When its ALPN list is empty Wharf sets it to `http/1.1`; a list
    /// without `http/1.1` is an [`Error::Config`] from
    /// [`bind`](crate::Server::bind).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use wharf::rustls;
    ///
    /// # fn demo(certs: Vec<rustls::pki_types::CertificateDer<'static>>, key: rustls::pki_types::PrivateKeyDer<'static>) -> Result<(), rustls::Error> {
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let config = rustls::ServerConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_no_client_auth()
    ///     .with_single_cert(certs, key)?;
    /// let server = wharf::Server::new().tls(wharf::TlsConfig::from_rustls(Arc::new(config)));
    /// # drop(server); Ok(()) }
    /// ```
    pub fn from_rustls(config: Arc<ServerConfig>) -> Self {
        TlsConfig {
            current: Arc::new(RwLock::new(with_alpn(config))),
        }
    }

    /// Reads the certificate chain and key again (see
    /// [`from_pem_files`](Self::from_pem_files)) and uses them for every
    /// TLS handshake from now on, on every server this configuration (or a
    /// clone of it) was given to. Connections already open are not
    /// touched. On an error the current configuration stays.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(tls: wharf::TlsConfig) {
    /// // On SIGHUP, or after the certificate was renewed:
    /// if let Err(err) = tls.reload_pem_files("cert.pem", "key.pem") {
    ///     tracing::error!(error = %err, "certificate reload failed; keeping the old one");
    /// }
    /// # }
    /// ```
    pub fn reload_pem_files(&self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<()> {
        let config = load(cert.as_ref(), key.as_ref())?;
        self.swap(config);
        tracing::info!(cert = %cert.as_ref().display(), "TLS configuration reloaded");
        Ok(())
    }

    /// Uses `config` for every TLS handshake from now on (see
    /// [`reload_pem_files`](Self::reload_pem_files)); its ALPN list is
    /// completed as in [`from_rustls`](Self::from_rustls). Fails with
    /// [`Error::Config`] when that list lacks `http/1.1`, keeping the
    /// current configuration.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(tls: wharf::TlsConfig, renewed: std::sync::Arc<wharf::rustls::ServerConfig>) -> wharf::Result<()> {
    /// tls.reload_rustls(renewed)?;
    /// # Ok(()) }
    /// ```
    pub fn reload_rustls(&self, config: Arc<ServerConfig>) -> Result<()> {
        let config = with_alpn(config);
        check_alpn(&config).map_err(|reason| Error::config("tls", reason))?;
        self.swap(config);
        tracing::info!("TLS configuration reloaded");
        Ok(())
    }

    fn swap(&self, config: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether the configuration can serve WebSocket upgrades: what `bind`
    /// checks.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        check_alpn(&self.config())
    }

    /// The server side of the TLS handshake on `tcp`, with the current
    /// configuration. An error is a peer that did not complete a TLS
    /// handshake (plaintext, garbage, no common cipher, or gone).
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        // Boxed: the handshake's state would otherwise be part of every
        // socket's upgrade task, TLS or not.
        let tls = Box::pin(TlsAcceptor::from(self.config()).accept(tcp)).await?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// `config` with ALPN `http/1.1` when it offers nothing.
fn with_alpn(config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if !config.alpn_protocols.is_empty() {
        return config;
    }
    let mut config = (*config).clone();
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Arc::new(config)
}

fn check_alpn(config: &ServerConfig) -> std::result::Result<(), String> {
    if config.alpn_protocols.iter().any(|p| p == HTTP_1_1) {
        Ok(())
    } else {
        Err("the rustls ServerConfig's ALPN protocols must include \"http/1.1\" (WebSocket upgrades are HTTP/1.1)".into())
    }
}

/// The reason for a PEM file that failed, never quoting its content.
fn pem_error(path: &Path, what: &str, err: pem::Error) -> Error {
    let why = match err {
        pem::Error::Io(err) => format!("cannot read it: {err}"),
        pem::Error::NoItemsFound => format!("no {what} found in it"),
        _ => format!("not a PEM {what}"),
    };
    Error::config("tls", format!("{}: {why}", path.display()))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|err| pem_error(cert, "certificate", err))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| pem_error(cert, "certificate", err))?;
    if certs.is_empty() {
        return Err(pem_error(cert, "certificate", pem::Error::NoItemsFound));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|err| pem_error(key, "private key", err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::config("tls", err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|err| {
            Error::config(
                "tls",
                format!("{} and {}: {err}", cert.display(), key.display()),
            )
        })?;
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}
