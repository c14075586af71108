//! SASL authentication of a freshly connected broker connection, as Kafka
//! does it since 1.0 (KIP-152): ApiVersions, then SaslHandshake v1 naming
//! the mechanism, then one or more SaslAuthenticate round trips carrying the
//! mechanism's messages inside ordinary Kafka request frames.
//!
//! Mechanisms: PLAIN (RFC 4616: the password itself, so only over TLS
//! outside a lab) and SCRAM-SHA-256/512 (RFC 5802/7677, see [`super::scram`]).

use super::scram::{ScramClient, ScramError, ScramHash};
use crate::conn::{ConnError, Connection};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;
use std::sync::Arc;

/// SaslHandshake v1 says "the mechanism's bytes come in SaslAuthenticate
/// requests"; v0 (raw bytes on the socket) is not spoken here.
const HANDSHAKE_VERSIONS: (i16, i16) = (1, 1);
const AUTHENTICATE_VERSIONS: (i16, i16) = (0, 2);

/// Kafka error codes the SASL exchange answers with.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// A SASL mechanism DataStorm speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka uses (`sasl.mechanism`, `sasl.enabled.mechanisms`).
    pub fn kafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kafka_name())
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(format!(
                "unknown SASL mechanism '{s}': use plain, scram-sha-256 or scram-sha-512"
            )),
        }
    }
}

/// A password: shown as `<redacted>` by `Debug` and `Display`, never
/// serialized, and only readable through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(s: impl Into<Arc<str>>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced, for messages
    /// that come from elsewhere (a broker's error message).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&*self.0, "<redacted>")
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why SASL settings are unusable before any broker is asked.
#[derive(Debug, thiserror::Error)]
pub enum SaslSetupError {
    #[error("the SASL username is empty")]
    EmptyUsername,
    #[error("the SASL password is empty")]
    EmptyPassword,
    #[error("the SASL username must not contain NUL characters")]
    NulInUsername,
    #[error("the SASL password must not contain NUL characters")]
    NulInPassword,
}

/// Who to authenticate as, and how.
#[derive(Clone, Serialize)]
pub struct SaslConfig {
    mechanism: SaslMechanism,
    username: String,
    #[serde(skip)]
    password: Secret,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

impl SaslConfig {
    pub fn new(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: Secret,
    ) -> Result<Self, SaslSetupError> {
        let username = username.into();
        if username.is_empty() {
            return Err(SaslSetupError::EmptyUsername);
        }
        if password.expose().is_empty() {
            return Err(SaslSetupError::EmptyPassword);
        }
        // PLAIN separates its fields with NUL; SCRAM forbids it too.
        if username.contains('\0') {
            return Err(SaslSetupError::NulInUsername);
        }
        if password.expose().contains('\0') {
            return Err(SaslSetupError::NulInPassword);
        }
        Ok(SaslConfig {
            mechanism,
            username,
            password,
        })
    }

    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &Secret {
        &self.password
    }
}

/// Authenticates `conn` (already version-negotiated) with `cfg`.
pub(crate) async fn authenticate(conn: &mut Connection, cfg: &SaslConfig) -> Result<(), ConnError> {
    let handshake_version = pick(
        conn,
        ApiKey::SaslHandshake,
        "SaslHandshake",
        HANDSHAKE_VERSIONS,
    )?;
    let req = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(cfg.mechanism.kafka_name()));
    let resp = conn.request(&req, handshake_version).await?;
    match resp.error_code {
        0 => {}
        UNSUPPORTED_SASL_MECHANISM => {
            return Err(ConnError::SaslMechanism {
                addr: conn.addr().to_owned(),
                mechanism: cfg.mechanism,
                offered: resp
                    .mechanisms
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
        code => {
            return Err(ConnError::Broker {
                addr: conn.addr().to_owned(),
                api: "SaslHandshake",
                code: crate::wire::codes::lookup(code),
            })
        }
    }
    let version = pick(
        conn,
        ApiKey::SaslAuthenticate,
        "SaslAuthenticate",
        AUTHENTICATE_VERSIONS,
    )?;
    match cfg.mechanism {
        SaslMechanism::Plain => {
            // authzid NUL authcid NUL passwd, with an empty authzid.
            let user = cfg.username.as_bytes();
            let pass = cfg.password.expose().as_bytes();
            let mut msg = Vec::with_capacity(user.len() + pass.len() + 2);
            msg.push(0);
            msg.extend_from_slice(user);
            msg.push(0);
            msg.extend_from_slice(pass);
            round_trip(conn, cfg, version, msg).await?;
            Ok(())
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let hash = if cfg.mechanism == SaslMechanism::ScramSha256 {
                ScramHash::Sha256
            } else {
                ScramHash::Sha512
            };
            let client = ScramClient::new(hash, &cfg.username, cfg.password.expose());
            let server_first = round_trip(conn, cfg, version, client.client_first()).await?;
            let (client_final, verifier) = client
                .handle_server_first(&server_first)
                .map_err(|e| scram_error(conn, cfg, e))?;
            let server_final = round_trip(conn, cfg, version, client_final).await?;
            verifier
                .verify_server_final(&server_final)
                .map_err(|e| scram_error(conn, cfg, e))
        }
    }
}

/// One SaslAuthenticate request and its answer's mechanism bytes.
async fn round_trip(
    conn: &mut Connection,
    cfg: &SaslConfig,
    version: i16,
    msg: Vec<u8>,
) -> Result<Bytes, ConnError> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg));
    let resp = conn.request(&req, version).await?;
    match resp.error_code {
        0 => {
            if resp.session_lifetime_ms > 0 {
                tracing::debug!(
                    addr = conn.addr(),
                    lifetime_ms = resp.session_lifetime_ms,
                    "the broker limits the SASL session; DataStorm does not re-authenticate (KIP-368)"
                );
            }
            Ok(resp.auth_bytes)
        }
        SASL_AUTHENTICATION_FAILED | ILLEGAL_SASL_STATE => Err(ConnError::SaslAuth {
            addr: conn.addr().to_owned(),
            username: cfg.username.clone(),
            mechanism: cfg.mechanism,
            detail: resp
                .error_message
                .as_ref()
                .map(|m| cfg.password.scrub(m))
                .unwrap_or_else(|| "the broker gave no reason".to_owned()),
        }),
        code => Err(ConnError::Broker {
            addr: conn.addr().to_owned(),
            api: "SaslAuthenticate",
            code: crate::wire::codes::lookup(code),
        }),
    }
}

fn scram_error(conn: &Connection, cfg: &SaslConfig, e: ScramError) -> ConnError {
    match e {
        // The server's own "e=" answer: an authentication failure.
        ScramError::Server(msg) => ConnError::SaslAuth {
            addr: conn.addr().to_owned(),
            username: cfg.username.clone(),
            mechanism: cfg.mechanism,
            detail: cfg.password.scrub(&msg),
        },
        other => ConnError::SaslProtocol {
            addr: conn.addr().to_owned(),
            mechanism: cfg.mechanism,
            detail: cfg.password.scrub(&other.to_string()),
        },
    }
}

fn pick(
    conn: &Connection,
    key: ApiKey,
    api: &'static str,
    ours: (i16, i16),
) -> Result<i16, ConnError> {
    conn.versions()
        .pick(key as i16, ours)
        .ok_or_else(|| ConnError::NoCommonVersion {
            addr: conn.addr().to_owned(),
            api,
            ours: format!("v{}..v{}", ours.0, ours.1),
            theirs: match conn.versions().range(key as i16) {
                Some((a, b)) => format!("v{a}..v{b}"),
                None => "none (is this a SASL listener?)".to_owned(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_parse_from_flag_and_kafka_names() {
        for (s, m) in [
            ("plain", SaslMechanism::Plain),
            ("PLAIN", SaslMechanism::Plain),
            ("scram-sha-256", SaslMechanism::ScramSha256),
            ("SCRAM-SHA-512", SaslMechanism::ScramSha512),
            ("scram_sha_512", SaslMechanism::ScramSha512),
        ] {
            assert_eq!(s.parse::<SaslMechanism>().unwrap(), m, "{s}");
        }
        assert!("gssapi".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn secrets_are_redacted_and_scrubbed() {
        let s = Secret::new("p4ss");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.scrub("bad password p4ss!"), "bad password <redacted>!");
        let cfg = SaslConfig::new(SaslMechanism::Plain, "bob", s).unwrap();
        let debug = format!("{cfg:?}");
        assert!(debug.contains("bob") && !debug.contains("p4ss"), "{debug}");
    }

    #[test]
    fn empty_or_nul_credentials_are_refused() {
        let m = SaslMechanism::Plain;
        assert!(SaslConfig::new(m, "", Secret::new("x")).is_err());
        assert!(SaslConfig::new(m, "u", Secret::new("")).is_err());
        assert!(SaslConfig::new(m, "u\0v", Secret::new("x")).is_err());
        assert!(SaslConfig::new(m, "u", Secret::new("x\0")).is_err());
    }
}
