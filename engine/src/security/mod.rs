//! Transport security for broker connections: TLS (rustls) and SASL
//! authentication (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), alone or together,
//! as Kafka's four `security.protocol`s name them.
//!
//! A [`SecurityConfig`] is resolved once, before any shard starts (files are
//! read and the TLS client configuration is built then), and is cheap to
//! clone into every shard. Secrets never leave it: the password has no
//! `Serialize`, a redacted `Debug`, and is scrubbed from broker messages.

pub mod sasl;
pub mod scram;
pub mod tls;

pub use sasl::{SaslConfig, SaslMechanism, Secret};
pub use tls::{TlsConfig, TlsOptions, TlsSetupError};

use serde::Serialize;

/// Kafka's `security.protocol`: how a listener expects clients to talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication.
    #[default]
    Plaintext,
    /// TLS, authenticated by certificates only.
    Ssl,
    /// SASL authentication over plain TCP (the credentials of PLAIN travel
    /// in the clear).
    SaslPlaintext,
    /// SASL authentication inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// The lower-case name used by the flags and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "plaintext" => Ok(SecurityProtocol::Plaintext),
            "ssl" | "tls" => Ok(SecurityProtocol::Ssl),
            "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
            "sasl_ssl" | "sasl_tls" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "unknown security protocol '{s}': use plaintext, ssl, sasl_plaintext or sasl_ssl"
            )),
        }
    }
}

/// Why a security configuration does not hold together.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("security protocol {protocol} needs TLS settings (a CA file, or --tls-insecure)")]
    MissingTls { protocol: SecurityProtocol },
    #[error("security protocol {protocol} needs SASL settings (mechanism, username, password)")]
    MissingSasl { protocol: SecurityProtocol },
    #[error("TLS settings were given, but security protocol {protocol} does not use TLS: use ssl or sasl_ssl")]
    UnusedTls { protocol: SecurityProtocol },
    #[error("SASL settings were given, but security protocol {protocol} does not use SASL: use sasl_plaintext or sasl_ssl")]
    UnusedSasl { protocol: SecurityProtocol },
}

/// How every broker connection of a run is secured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SecurityConfig {
    protocol: SecurityProtocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sasl: Option<SaslConfig>,
}

/// Plain TCP without authentication, for `Connection::connect`.
pub static PLAINTEXT: SecurityConfig = SecurityConfig::plaintext();

impl SecurityConfig {
    /// Plain TCP without authentication (DataStorm's default).
    pub const fn plaintext() -> Self {
        SecurityConfig {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// A configuration whose parts match `protocol`: TLS settings exactly
    /// for ssl and sasl_ssl, SASL settings exactly for the sasl_ protocols.
    pub fn new(
        protocol: SecurityProtocol,
        tls: Option<TlsConfig>,
        sasl: Option<SaslConfig>,
    ) -> Result<Self, SecurityError> {
        match (protocol.uses_tls(), tls.is_some()) {
            (true, false) => return Err(SecurityError::MissingTls { protocol }),
            (false, true) => return Err(SecurityError::UnusedTls { protocol }),
            _ => {}
        }
        match (protocol.uses_sasl(), sasl.is_some()) {
            (true, false) => return Err(SecurityError::MissingSasl { protocol }),
            (false, true) => return Err(SecurityError::UnusedSasl { protocol }),
            _ => {}
        }
        Ok(SecurityConfig {
            protocol,
            tls,
            sasl,
        })
    }

    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    pub fn sasl(&self) -> Option<&SaslConfig> {
        self.sasl.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_in_kafka_and_flag_spellings() {
        for (s, p) in [
            ("plaintext", SecurityProtocol::Plaintext),
            ("SSL", SecurityProtocol::Ssl),
            ("sasl_plaintext", SecurityProtocol::SaslPlaintext),
            ("SASL_SSL", SecurityProtocol::SaslSsl),
            ("sasl-ssl", SecurityProtocol::SaslSsl),
        ] {
            assert_eq!(s.parse::<SecurityProtocol>().unwrap(), p, "{s}");
        }
        assert!("kerberos".parse::<SecurityProtocol>().is_err());
    }

    #[test]
    fn parts_must_match_the_protocol() {
        let sasl = SaslConfig::new(SaslMechanism::Plain, "u", Secret::new("p")).unwrap();
        assert!(SecurityConfig::new(SecurityProtocol::SaslSsl, None, Some(sasl.clone())).is_err());
        assert!(
            SecurityConfig::new(SecurityProtocol::Plaintext, None, Some(sasl.clone())).is_err()
        );
        assert!(SecurityConfig::new(SecurityProtocol::SaslPlaintext, None, None).is_err());
        let ok = SecurityConfig::new(SecurityProtocol::SaslPlaintext, None, Some(sasl)).unwrap();
        assert_eq!(ok.protocol(), SecurityProtocol::SaslPlaintext);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_json() {
        let sasl = SaslConfig::new(
            SaslMechanism::ScramSha512,
            "alice",
            Secret::new("hunter2-secret"),
        )
        .unwrap();
        let cfg = SecurityConfig::new(SecurityProtocol::SaslPlaintext, None, Some(sasl)).unwrap();
        let debug = format!("{cfg:?} {:?}", cfg.sasl().unwrap().password());
        let json = serde_json::to_string(&cfg).unwrap();
        for text in [&debug, &json] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("alice"), "{text}");
        }
        assert_eq!(
            json,
            r#"{"protocol":"sasl_plaintext","sasl":{"mechanism":"SCRAM-SHA-512","username":"alice"}}"#
        );
    }
}
