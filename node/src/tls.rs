//! Mutual TLS (rustls through tonic). With `[tls]` in a node's settings,
//! its Raft port takes only connections that show a certificate signed by
//! the cluster's CA, and it shows its own certificate to every peer it
//! calls and checks theirs against the same CA: a node with another CA's
//! certificate can neither send Raft messages nor be sent any (so it
//! cannot join). The gRPC API port serves TLS with the same certificate;
//! a client there may show a certificate (a node forwarding a command does)
//! but need not: clients prove who they are with their keys.
//!
//! [`DevCa`] makes a throwaway CA and node certificates for `ledger dev --tls`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

/// How long a connection may take to finish its TLS handshake before the
/// server drops it (one that never finishes holds nothing for longer).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[tls]` section of a node's settings: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The cluster's certificate authority: every peer's certificate must
    /// be signed by it.
    pub ca: PathBuf,
    /// This node's certificate (its chain, leaf first).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The name a peer's certificate must carry, in place of the host of
    /// the peer's address (when certificates name the cluster rather than
    /// each node's address).
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The reason is in the message, not a source, so that it is said once.
    #[error("tls: cannot read {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("tls: {path} holds no {what} in PEM")]
    NotPem { path: PathBuf, what: &'static str },
    #[error("tls: {0}")]
    Refused(String),
    /// This node's own certificate is not one its peers would take.
    #[error("tls: this node's certificate {0}")]
    NotTaken(String),
}

/// A node's TLS material, read and checked once at start.
#[derive(Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Identity,
    server_name: Option<String>,
    /// The HTTP port's: rustls itself (tonic keeps its own to itself).
    http: tokio_rustls::TlsAcceptor,
}

/// Debug output never shows the private key.
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { <hidden> }")
    }
}

fn read_pem(path: &Path, what: &'static str, marker: &str) -> Result<String, TlsError> {
    let text = std::fs::read_to_string(path).map_err(|reason| TlsError::Read {
        path: path.to_owned(),
        reason,
    })?;
    if !text.contains(marker) {
        return Err(TlsError::NotPem {
            path: path.to_owned(),
            what,
        });
    }
    Ok(text)
}

/// The CA certificate in `path`, for a client that trusts it.
pub fn read_ca(path: &Path) -> Result<Certificate, TlsError> {
    let ca = read_pem(path, "certificate", "-----BEGIN CERTIFICATE-----")?;
    Ok(Certificate::from_pem(ca))
}

/// The certificate in `cert` with its key in `key`, for a client to show.
pub fn read_identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let cert = read_pem(cert, "certificate", "-----BEGIN CERTIFICATE-----")?;
    let key = read_pem(key, "private key", "PRIVATE KEY-----")?;
    Ok(Identity::from_pem(cert, key))
}

/// A client's TLS: trusts `ca`, shows no certificate of its own, and checks
/// `server_name` (if given) in place of the address's host.
pub fn client_trusting(ca: Certificate, server_name: Option<&str>) -> ClientTlsConfig {
    // The handshake is bounded too: connect_timeout covers only TCP's.
    let config = ClientTlsConfig::new()
        .ca_certificate(ca)
        .timeout(HANDSHAKE_TIMEOUT);
    match server_name {
        Some(name) => config.domain_name(name),
        None => config,
    }
}

impl Tls {
    /// Reads the files `settings` names and checks that they make a server
    /// and a client, and that its peers will take the node's certificate:
    /// signed by the CA, valid now, for client and server authentication,
    /// naming each host in `hosts` (the node's addresses'; `server_name`
    /// in their place if set). What does not is refused here, with why,
    /// not at the first call.
    pub fn load(settings: &TlsSettings, hosts: &[&str]) -> Result<Self, TlsError> {
        let ca_pem = read_pem(&settings.ca, "certificate", "-----BEGIN CERTIFICATE-----")?;
        let cert = read_pem(&settings.cert, "certificate", "-----BEGIN CERTIFICATE-----")?;
        let key = read_pem(&settings.key, "private key", "PRIVATE KEY-----")?;
        let names = match &settings.server_name {
            Some(name) => vec![name.as_str()],
            None => hosts.to_vec(),
        };
        check_taken(&ca_pem, &cert, &names)?;
        let tls = Self {
            ca: Certificate::from_pem(ca_pem),
            http: http_acceptor(&cert, &key)?,
            identity: Identity::from_pem(cert, key),
            server_name: settings.server_name.clone(),
        };
        let refused =
            |error: tonic::transport::Error| TlsError::Refused(crate::client::with_causes(&error));
        for server in [tls.raft_server(), tls.api_server()] {
            Server::builder().tls_config(server).map_err(refused)?;
        }
        Endpoint::from_static("https://localhost")
            .tls_config(tls.client())
            .map_err(refused)?;
        Ok(tls)
    }

    /// The same certificate, trusting the CA in `ca` instead (a stranger
    /// to the cluster, in tests).
    pub fn trusting(&self, ca: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            ca: read_ca(ca)?,
            ..self.clone()
        })
    }

    /// The Raft port's: a caller must show a certificate of the cluster's CA.
    pub fn raft_server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// The API port's: a caller may show a certificate (checked against
    /// the cluster's CA if it does) but need not.
    pub fn api_server(&self) -> ServerTlsConfig {
        self.raft_server().client_auth_optional(true)
    }

    /// The HTTP port's: HTTPS (HTTP/2 or 1.1); callers show keys, not
    /// certificates.
    pub fn http_server(&self) -> tokio_rustls::TlsAcceptor {
        self.http.clone()
    }

    /// What this node calls its peers with: its certificate, and the
    /// cluster's CA to check theirs.
    pub fn client(&self) -> ClientTlsConfig {
        client_trusting(self.ca.clone(), self.server_name.as_deref())
            .identity(self.identity.clone())
    }
}

/// The certificates of the CA PEM `ca`, as rustls' roots.
fn roots_of(ca: &str) -> Result<tokio_rustls::rustls::RootCertStore, TlsError> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let refused = |error: &dyn std::fmt::Display| TlsError::Refused(error.to_string());
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(certificate.map_err(|error| refused(&error))?)
            .map_err(|error| refused(&error))?;
    }
    Ok(roots)
}

/// A TLS client of rustls itself (not tonic's) that trusts the CA in `ca`
/// alone and shows no certificate: `ledger health` over HTTPS, and tests.
pub fn connector(ca: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
    use tokio_rustls::rustls;
    let ca = read_pem(ca, "certificate", "-----BEGIN CERTIFICATE-----")?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Refused(error.to_string()))?
        .with_root_certificates(roots_of(&ca)?)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// Checks that a peer trusting `ca` takes the certificate chain `cert`,
/// as a client and as a server of each of `names`.
fn check_taken(ca: &str, cert: &str, names: &[&str]) -> Result<(), TlsError> {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::client::danger::ServerCertVerifier as _;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    let refused = |error: &dyn std::fmt::Display| TlsError::Refused(error.to_string());
    let roots = roots_of(ca)?;
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| refused(&error))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(TlsError::NotTaken("is missing".to_owned()));
    };
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let now = UnixTime::now();
    let as_client = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|error| refused(&error))?;
    as_client
        .verify_client_cert(leaf, intermediates, now)
        .map_err(|error| TlsError::NotTaken(format!("is refused as a client's: {error}")))?;
    let as_server = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|error| refused(&error))?;
    for name in names {
        let server = ServerName::try_from(name.to_string()).map_err(|error| {
            TlsError::NotTaken(format!("cannot be checked for {name:?}: {error}"))
        })?;
        as_server
            .verify_server_cert(leaf, intermediates, &server, &[], now)
            .map_err(|error| TlsError::NotTaken(format!("is refused for {name}: {error}")))?;
    }
    Ok(())
}

/// A TLS acceptor of HTTPS with the certificate chain `cert` and `key`.
fn http_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let refused = |error: &dyn std::fmt::Display| TlsError::Refused(error.to_string());
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| refused(&error))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|error| refused(&error))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| refused(&error))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| refused(&error))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

/// A throwaway certificate authority: `ledger dev --tls` and tests.
pub struct DevCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate and its private key, in PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl DevCa {
    /// A new CA named `name`, with a key of its own.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The CA's certificate.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for a node (server and client) valid for `names`:
    /// host names or IP addresses.
    pub fn issue(&self, node: &str, names: &[String]) -> Result<Issued, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// The host of `host:port` (`[::1]:7000` gives `::1`).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("written");
        path
    }

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(
            host_of("ledger-eu-0.ledger-eu:7000"),
            "ledger-eu-0.ledger-eu"
        );
    }

    #[test]
    fn a_node_loads_what_a_dev_ca_issues_and_refuses_what_does_not_fit() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = DevCa::new("test CA").expect("CA");
        let issued = ca
            .issue("node-1", &["localhost".to_owned()])
            .expect("issued");
        let other = DevCa::new("other CA")
            .expect("CA")
            .issue("node-2", &["localhost".to_owned()])
            .expect("issued");
        let settings = TlsSettings {
            ca: write(dir.path(), "ca.pem", &ca.pem()),
            cert: write(dir.path(), "node.pem", &issued.cert),
            key: write(dir.path(), "node.key", &issued.key),
            server_name: None,
        };
        assert!(Tls::load(&settings, &["localhost"]).is_ok());
        // Its peers would not take it for a host it does not name ...
        let unnamed = Tls::load(&settings, &["ledger-eu-0.example"]);
        assert!(
            matches!(unnamed, Err(TlsError::NotTaken(_))),
            "{:?}",
            unnamed.err()
        );
        // ... unless the cluster's name is checked in its place.
        let named = TlsSettings {
            server_name: Some("localhost".to_owned()),
            ..settings.clone()
        };
        assert!(Tls::load(&named, &["ledger-eu-0.example"]).is_ok());
        // Nor a certificate of another CA.
        let foreign = TlsSettings {
            cert: write(dir.path(), "foreign.pem", &other.cert),
            key: write(dir.path(), "foreign.key", &other.key),
            ..settings.clone()
        };
        let foreign = Tls::load(&foreign, &[]);
        assert!(
            matches!(foreign, Err(TlsError::NotTaken(_))),
            "{:?}",
            foreign.err()
        );

        let missing = TlsSettings {
            ca: dir.path().join("nowhere.pem"),
            ..settings.clone()
        };
        assert!(matches!(
            Tls::load(&missing, &[]),
            Err(TlsError::Read { .. })
        ));

        let key_as_cert = TlsSettings {
            cert: settings.key.clone(),
            ..settings.clone()
        };
        assert!(matches!(
            Tls::load(&key_as_cert, &[]),
            Err(TlsError::NotPem { .. })
        ));

        // A certificate with another certificate's key.
        let mismatched = TlsSettings {
            key: write(dir.path(), "other.key", &other.key),
            ..settings.clone()
        };
        let refused = Tls::load(&mismatched, &[]);
        assert!(
            matches!(refused, Err(TlsError::Refused(_))),
            "{:?}",
            refused.err()
        );

        let garbage = TlsSettings {
            cert: write(
                dir.path(),
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            ),
            ..settings
        };
        assert!(Tls::load(&garbage, &[]).is_err());
    }
}
