//! TLS for broker connections, through rustls with ring as the crypto
//! provider: the brokers' certificates are checked against a CA file (or
//! the system's roots), and a client certificate is presented when one is
//! given (mutual TLS). `insecure` skips the certificate check and the
//! host-name check (signatures of the handshake itself are still checked).

use futures_rustls::TlsConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the TLS settings come from.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) that signed the brokers'
    /// certificates. `None`: the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, for brokers that
    /// require client certificates (`ssl.client.auth=required`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Do not verify the brokers' certificates (lab use only).
    pub insecure: bool,
}

/// Why the TLS settings cannot be used. Names files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCaCertificate { path: PathBuf },
    #[error("the CA file {path} has a certificate rustls cannot use as a trust anchor: {reason}")]
    BadCaCertificate { path: PathBuf, reason: String },
    #[error("the client certificate file {path} holds no PEM certificate")]
    NoClientCertificate { path: PathBuf },
    #[error("the client key file {path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1; encrypted keys are not supported)")]
    NoClientKey { path: PathBuf },
    #[error("the client certificate {cert} and key {key} cannot be used together: {reason}")]
    BadClientIdentity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error(
        "no usable root certificate on this system ({reason}); give the brokers' CA with --tls-ca"
    )]
    NoSystemRoots { reason: String },
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// Resolved TLS settings: the files as given (for reports) and the rustls
/// client configuration built from them, shared by every connection.
#[derive(Clone, Serialize)]
pub struct TlsConfig {
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    insecure: bool,
    #[serde(skip)]
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the files and builds the client configuration.
    pub fn load(opts: &TlsOptions) -> Result<TlsConfig, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
        } else {
            builder.with_root_certificates(roots(opts.ca_file.as_deref())?)
        };
        let config = match &opts.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certs(cert, "client certificate")?;
                if chain.is_empty() {
                    return Err(TlsSetupError::NoClientCertificate { path: cert.clone() });
                }
                let key_der = read_key(key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    TlsSetupError::BadClientIdentity {
                        cert: cert.clone(),
                        key: key.clone(),
                        reason: e.to_string(),
                    }
                })?
            }
        };
        Ok(TlsConfig {
            ca_file: opts.ca_file.clone(),
            client_cert: opts.client_cert.as_ref().map(|(c, _)| c.clone()),
            client_key: opts.client_cert.as_ref().map(|(_, k)| k.clone()),
            insecure: opts.insecure,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    pub fn insecure(&self) -> bool {
        self.insecure
    }

    pub fn has_client_certificate(&self) -> bool {
        self.client_cert.is_some()
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name to verify the broker's certificate against: the host part
    /// of `addr` ("host:port", "[v6]:port").
    pub(crate) fn server_name(addr: &str) -> Option<ServerName<'static>> {
        let host = match addr.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h,
            _ => addr,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).ok()
    }
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = read_certs(path, "CA")?;
            if certs.is_empty() {
                return Err(TlsSetupError::NoCaCertificate {
                    path: path.to_owned(),
                });
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| TlsSetupError::BadCaCertificate {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsSetupError::NoSystemRoots {
                    reason: found
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "none found".to_owned()),
                });
            }
        }
    }
    Ok(roots)
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    // Sections of other kinds (a key in the same file) are skipped; a
    // malformed certificate section is an error, not silently dropped.
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| match what {
            "CA" => TlsSetupError::BadCaCertificate {
                path: path.to_owned(),
                reason: e.to_string(),
            },
            _ => TlsSetupError::NoClientCertificate {
                path: path.to_owned(),
            },
        })
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        what: "client key",
        path: path.to_owned(),
        source,
    })?;
    // The parse error is not passed on: it could quote part of the key.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsSetupError::NoClientKey {
        path: path.to_owned(),
    })
}

/// `--tls-insecure`: accepts any certificate for any name, but still checks
/// that the handshake is signed by the key of the certificate presented.
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure explained for people: what went wrong and what to do.
/// `None` when `err` is not a TLS error.
pub(crate) fn explain(err: &std::io::Error, tls: &TlsConfig) -> Option<TlsFailure> {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    if err.kind() == std::io::ErrorKind::UnexpectedEof && err.to_string().contains("tls handshake")
    {
        return Some(TlsFailure::Handshake {
            reason: "the broker closed the connection during the TLS handshake; is this a TLS \
                     listener? (check --security-protocol and the port)"
                .to_owned(),
        });
    }
    let inner = err.get_ref()?.downcast_ref::<E>()?;
    Some(match inner {
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            TlsFailure::WrongName {
                reason: inner.to_string(),
            }
        }
        E::InvalidCertificate(_) => TlsFailure::Untrusted {
            ca: match tls.ca_file() {
                Some(p) => format!("the CA file {}", p.display()),
                None => {
                    "the system's root certificates (give the brokers' CA with --tls-ca)".to_owned()
                }
            },
            reason: inner.to_string(),
        },
        E::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::AccessDenied,
        ) => TlsFailure::Rejected {
            reason: inner.to_string(),
            hint: if tls.has_client_certificate() {
                "the broker does not accept the client certificate given with --tls-cert \
                 (is it signed by a CA in the broker's truststore, and not expired?)"
            } else {
                "the broker requires a client certificate: pass --tls-cert and --tls-key"
            },
        },
        other => TlsFailure::Handshake {
            reason: other.to_string(),
        },
    })
}

/// What [`explain`] found.
#[derive(Debug, Clone)]
pub(crate) enum TlsFailure {
    Untrusted { ca: String, reason: String },
    WrongName { reason: String },
    Rejected { reason: String, hint: &'static str },
    Handshake { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        let name = |a: &str| TlsConfig::server_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("127.0.0.1:9093").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            name("kafka-1.example.com:9093").as_deref(),
            Some("kafka-1.example.com")
        );
        assert_eq!(name("[::1]:9093").as_deref(), Some("::1"));
        assert_eq!(name("broker").as_deref(), Some("broker"));
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("ds-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing-ca.pem");
        let err = TlsConfig::load(&TlsOptions {
            ca_file: Some(missing.clone()),
            ..TlsOptions::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("missing-ca.pem"), "{err}");

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsConfig::load(&TlsOptions {
            ca_file: Some(empty),
            ..TlsOptions::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, TlsSetupError::NoCaCertificate { .. }),
            "{err}"
        );

        let key = dir.join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = TlsConfig::load(&TlsOptions {
            insecure: true,
            client_cert: Some((empty_cert(&dir), key)),
            ..TlsOptions::default()
        })
        .unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn empty_cert(dir: &Path) -> PathBuf {
        let p = dir.join("cert.pem");
        std::fs::write(&p, "").unwrap();
        p
    }

    #[test]
    fn insecure_needs_no_files() {
        let cfg = TlsConfig::load(&TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        })
        .unwrap();
        assert!(cfg.insecure());
        assert!(format!("{cfg:?}").contains("insecure: true"));
    }
}
