//! # synod-tls: TLS for node links and the client port
//!
//! Owns everything TLS in Synod, on rustls (ring provider):
//!
//! - [`NodeTls`]: mutual TLS between nodes. Both sides present a
//!   certificate signed by the cluster's CA; the connecting side checks
//!   that the server's certificate names the peer it dialled, and the
//!   accepting side learns the peer's certificate, which must name the
//!   node the handshake says it is ([`names`]).
//! - [`ServerTls`] and [`ClientTls`]: the client port (server TLS; clients
//!   still present the client token) and the client library's side.
//! - [`BoxStream`]: a TCP or TLS stream, so framing code is written once.
//!
//! Certificates and keys are PEM files. A node's name is a DNS subject
//! alternative name of its certificate (`n1`, `acceptor-a`).

pub use rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, crypto::CryptoProvider};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream a connection runs over: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// What can go wrong loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM object of the kind needed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the material (a key that does not match, say).
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The PEM files of one node: the cluster CA, its certificate, its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate(s) every node's certificate is signed by.
    pub ca: PathBuf,
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no private key: {e}")))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(path, format!("not a CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn setup(error: impl ToString) -> TlsError {
    TlsError::Setup(error.to_string())
}

/// Mutual TLS between the nodes of a cluster.
#[derive(Clone)]
pub struct NodeTls {
    server: tokio_rustls::TlsAcceptor,
    client: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

impl NodeTls {
    /// Both sides' configs from `files`: the server requires a client
    /// certificate signed by the CA, the client presents this node's.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let roots = roots(&files.ca)?;
        let (certs, key) = (certificates(&files.cert)?, private_key(&files.key)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(setup)?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(setup)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(setup)?;
        Ok(Self {
            server: Arc::new(server).into(),
            client: Arc::new(client).into(),
        })
    }

    /// TLS over `tcp` to node `peer`, whose certificate must name it.
    pub async fn connect(&self, peer: &str, tcp: TcpStream) -> io::Result<BoxStream> {
        let name = ServerName::try_from(peer.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Box::new(self.client.connect(name, tcp).await?))
    }

    /// Accept TLS on `tcp`: the peer must present a certificate signed by
    /// the CA, returned with the stream for [`names`] once the peer says
    /// who it is.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<(BoxStream, CertificateDer<'static>)> {
        let stream = self.server.accept(tcp).await?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate")
            })?;
        Ok((Box::new(stream), peer))
    }
}

/// Whether `cert` (already verified against the CA) names `node`: one of
/// its DNS subject alternative names is exactly `node`.
pub fn names(cert: &CertificateDer<'_>, node: &str) -> bool {
    let Ok(name) = ServerName::try_from(node) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|end| end.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Whether `node` can be a certificate's DNS name (what TLS needs of a
/// node's name).
pub fn valid_name(node: &str) -> bool {
    matches!(ServerName::try_from(node), Ok(ServerName::DnsName(_)))
}

/// Server TLS on the client port: this node's certificate, no client
/// certificate asked (clients prove themselves with the client token).
#[derive(Clone)]
pub struct ServerTls(tokio_rustls::TlsAcceptor);

impl ServerTls {
    /// From this node's certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_no_client_auth()
            .with_single_cert(certificates(cert)?, private_key(key)?)
            .map_err(setup)?;
        Ok(Self(Arc::new(config).into()))
    }

    /// Accept TLS on `tcp`.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<BoxStream> {
        Ok(Box::new(self.0.accept(tcp).await?))
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// A client's TLS: the CA that signed the nodes' certificates.
#[derive(Clone)]
pub struct ClientTls(tokio_rustls::TlsConnector);

impl ClientTls {
    /// Trust the CA certificate(s) in `ca`.
    pub fn load(ca: &Path) -> Result<Self, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth();
        Ok(Self(Arc::new(config).into()))
    }

    /// TLS over `tcp` to a server whose certificate names `name` (a node
    /// name, or an IP address).
    pub async fn connect(&self, name: &str, tcp: TcpStream) -> io::Result<BoxStream> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Box::new(self.0.connect(name, tcp).await?))
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}
