//! Flags for talking to secured Kafka listeners: TLS and SASL
//! (see docs/security.md).

use super::settings;
use clap::{Args, ValueEnum};
use datastorm_engine::security::{
    SaslConfig, SaslMechanism, Secret, SecurityConfig, SecurityProtocol, TlsConfig, TlsOptions,
};
use std::path::PathBuf;

/// The environment variable read for the SASL password when neither
/// --sasl-password nor --sasl-password-file is given.
pub const PASSWORD_ENV: &str = "DATASTORM_SASL_PASSWORD";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ProtocolArg {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MechanismArg {
    Plain,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-512")]
    ScramSha512,
}

/// Security flags that do not fit together, or files they name that
/// cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityFlagError {
    #[error(
        "TLS or SASL flags were given without --security-protocol: add \
         --security-protocol {0}"
    )]
    NoProtocol(&'static str),
    #[error(
        "--tls-ca, --tls-cert and --tls-insecure need --security-protocol ssl or \
         sasl_ssl, not {0}"
    )]
    TlsWithoutTls(SecurityProtocol),
    #[error(
        "--sasl-mechanism, --sasl-username and the SASL password need \
         --security-protocol sasl_plaintext or sasl_ssl, not {0}"
    )]
    SaslWithoutSasl(SecurityProtocol),
    #[error(
        "--security-protocol {0} needs --sasl-mechanism (plain, \
         scram-sha-256 or scram-sha-512: the one the brokers enable)"
    )]
    NoMechanism(SecurityProtocol),
    #[error("--security-protocol {0} needs --sasl-username")]
    NoUsername(SecurityProtocol),
    #[error(
        "--security-protocol {0} needs a password: --sasl-password-file \
         FILE, the {PASSWORD_ENV} environment variable, or --sasl-password"
    )]
    NoPassword(SecurityProtocol),
    #[error("cannot read the SASL password file {}: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the SASL password file {} is empty (its first line is the password)",
        .0.display()
    )]
    EmptyPasswordFile(PathBuf),
    #[error(transparent)]
    Tls(#[from] datastorm_engine::security::TlsSetupError),
    #[error(transparent)]
    Sasl(#[from] datastorm_engine::security::sasl::SaslSetupError),
    #[error(transparent)]
    Config(#[from] datastorm_engine::security::SecurityError),
}

/// How to reach secured listeners. Secrets given here never appear in
/// reports, logs or messages.
#[derive(Args, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityArgs {
    /// How the brokers' listener expects clients to connect, as Kafka's
    /// security.protocol: plaintext, ssl (TLS), sasl_plaintext (SASL
    /// without TLS: PLAIN sends the password in the clear) or sasl_ssl
    /// (SASL inside TLS). Default: plaintext.
    #[arg(long, value_enum, value_name = "PROTOCOL", help_heading = "Security")]
    #[serde(deserialize_with = "settings::some_choice")]
    pub security_protocol: Option<ProtocolArg>,
    /// PEM file with the CA certificate(s) that signed the brokers'
    /// certificates (ssl, sasl_ssl). Without it, the system's root
    /// certificates are used.
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that require client
    /// certificates (mutual TLS); needs --tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        help_heading = "Security"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (unencrypted PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        help_heading = "Security"
    )]
    pub tls_key: Option<PathBuf>,
    /// Do not verify the brokers' certificates or host names. Anyone on the
    /// network path can then impersonate the brokers; for labs only.
    #[arg(long, conflicts_with = "tls_ca", help_heading = "Security")]
    pub tls_insecure: bool,
    /// SASL mechanism (sasl_plaintext, sasl_ssl): plain, scram-sha-256 or
    /// scram-sha-512.
    #[arg(long, value_enum, value_name = "MECHANISM", help_heading = "Security")]
    #[serde(deserialize_with = "settings::some_choice")]
    pub sasl_mechanism: Option<MechanismArg>,
    /// SASL username.
    #[arg(long, value_name = "USER", help_heading = "Security")]
    pub sasl_username: Option<String>,
    /// SASL password. Visible to other users in the process list: prefer
    /// --sasl-password-file or the DATASTORM_SASL_PASSWORD environment
    /// variable (read when neither flag is given).
    #[arg(
        long,
        value_name = "PASSWORD",
        conflicts_with = "sasl_password_file",
        help_heading = "Security"
    )]
    pub sasl_password: Option<String>,
    /// File whose first line is the SASL password.
    #[arg(long, value_name = "FILE", help_heading = "Security")]
    pub sasl_password_file: Option<PathBuf>,
}

impl std::fmt::Debug for SecurityArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityArgs")
            .field("security_protocol", &self.security_protocol)
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_insecure", &self.tls_insecure)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("sasl_password_file", &self.sasl_password_file)
            .finish()
    }
}

impl SecurityArgs {
    settings::overlay_fields!(
        fields: security_protocol, tls_ca, tls_cert, tls_key, tls_insecure, sasl_mechanism,
        sasl_username, sasl_password, sasl_password_file;
        nested:
    );

    /// Resolves the flags into the engine's configuration: checks that they
    /// fit together, reads the certificate, key and password files, and
    /// builds the TLS client configuration. Errors are one line for people.
    pub fn to_config(&self) -> Result<SecurityConfig, SecurityFlagError> {
        self.resolve(|| std::env::var(PASSWORD_ENV).ok())
    }

    fn resolve(
        &self,
        env_password: impl FnOnce() -> Option<String>,
    ) -> Result<SecurityConfig, SecurityFlagError> {
        let tls_flags = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_insecure;
        let sasl_flags = self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some()
            || self.sasl_password_file.is_some();
        let protocol = match self.security_protocol {
            Some(p) => protocol(p),
            None if tls_flags || sasl_flags => {
                let which = if sasl_flags && tls_flags {
                    "sasl_ssl"
                } else if sasl_flags {
                    "sasl_ssl (or sasl_plaintext)"
                } else {
                    "ssl (or sasl_ssl)"
                };
                return Err(SecurityFlagError::NoProtocol(which));
            }
            None => SecurityProtocol::Plaintext,
        };
        if tls_flags && !protocol.uses_tls() {
            return Err(SecurityFlagError::TlsWithoutTls(protocol));
        }
        if sasl_flags && !protocol.uses_sasl() {
            return Err(SecurityFlagError::SaslWithoutSasl(protocol));
        }
        let tls = if protocol.uses_tls() {
            let opts = TlsOptions {
                ca_file: self.tls_ca.clone(),
                client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
                insecure: self.tls_insecure,
            };
            if opts.insecure {
                eprintln!(
                    "datastorm: warning: --tls-insecure: the brokers' certificates are not \
                     verified, so anyone on the network path can impersonate them and read \
                     the traffic{}",
                    if protocol.uses_sasl() {
                        ", the SASL credentials included"
                    } else {
                        ""
                    }
                );
            }
            Some(TlsConfig::load(&opts)?)
        } else {
            None
        };
        let sasl = if protocol.uses_sasl() {
            let mechanism = match self.sasl_mechanism {
                Some(m) => mechanism(m),
                None => return Err(SecurityFlagError::NoMechanism(protocol)),
            };
            let username = self
                .sasl_username
                .clone()
                .ok_or(SecurityFlagError::NoUsername(protocol))?;
            let password = self
                .password(env_password)?
                .ok_or(SecurityFlagError::NoPassword(protocol))?;
            Some(SaslConfig::new(mechanism, username, password)?)
        } else {
            None
        };
        Ok(SecurityConfig::new(protocol, tls, sasl)?)
    }

    fn password(
        &self,
        env_password: impl FnOnce() -> Option<String>,
    ) -> Result<Option<Secret>, SecurityFlagError> {
        if let Some(p) = &self.sasl_password {
            return Ok(Some(Secret::new(p.as_str())));
        }
        if let Some(path) = &self.sasl_password_file {
            let text = std::fs::read_to_string(path).map_err(|source| {
                SecurityFlagError::PasswordFile {
                    path: path.clone(),
                    source,
                }
            })?;
            let first = text.lines().next().unwrap_or("");
            if first.is_empty() {
                return Err(SecurityFlagError::EmptyPasswordFile(path.clone()));
            }
            return Ok(Some(Secret::new(first)));
        }
        Ok(env_password()
            .filter(|p| !p.is_empty())
            .map(|p| Secret::new(p.as_str())))
    }
}

fn protocol(p: ProtocolArg) -> SecurityProtocol {
    match p {
        ProtocolArg::Plaintext => SecurityProtocol::Plaintext,
        ProtocolArg::Ssl => SecurityProtocol::Ssl,
        ProtocolArg::SaslPlaintext => SecurityProtocol::SaslPlaintext,
        ProtocolArg::SaslSsl => SecurityProtocol::SaslSsl,
    }
}

fn mechanism(m: MechanismArg) -> SaslMechanism {
    match m {
        MechanismArg::Plain => SaslMechanism::Plain,
        MechanismArg::ScramSha256 => SaslMechanism::ScramSha256,
        MechanismArg::ScramSha512 => SaslMechanism::ScramSha512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        security: SecurityArgs,
    }

    fn args(flags: &[&str]) -> SecurityArgs {
        Cli::try_parse_from(std::iter::once("t").chain(flags.iter().copied()))
            .map(|c| c.security)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
    }

    fn resolve(flags: &[&str]) -> Result<SecurityConfig, String> {
        args(flags).resolve(|| None).map_err(|e| e.to_string())
    }

    #[test]
    fn no_flags_is_plaintext() {
        assert_eq!(
            resolve(&[]).unwrap().protocol(),
            SecurityProtocol::Plaintext
        );
    }

    #[test]
    fn sasl_plaintext_with_a_password_flag() {
        let cfg = resolve(&[
            "--security-protocol",
            "sasl_plaintext",
            "--sasl-mechanism",
            "scram-sha-256",
            "--sasl-username",
            "alice",
            "--sasl-password",
            "pw-123",
        ])
        .unwrap();
        let sasl = cfg.sasl().unwrap();
        assert_eq!(sasl.mechanism(), SaslMechanism::ScramSha256);
        assert_eq!(sasl.username(), "alice");
        assert_eq!(sasl.password().expose(), "pw-123");
        assert!(!format!("{cfg:?}").contains("pw-123"));
    }

    #[test]
    fn the_password_comes_from_a_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("ds-sec-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let base = [
            "--security-protocol",
            "sasl_plaintext",
            "--sasl-mechanism",
            "plain",
            "--sasl-username",
            "u",
        ];
        let mut with_file: Vec<&str> = base.to_vec();
        with_file.extend(["--sasl-password-file", file.to_str().unwrap()]);
        let cfg = args(&with_file)
            .resolve(|| Some("from-env".into()))
            .unwrap();
        assert_eq!(cfg.sasl().unwrap().password().expose(), "from-file");
        let cfg = args(&base).resolve(|| Some("from-env".into())).unwrap();
        assert_eq!(cfg.sasl().unwrap().password().expose(), "from-env");
        let err = args(&base).resolve(|| None).unwrap_err().to_string();
        assert!(err.contains(PASSWORD_ENV), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_that_do_not_fit_the_protocol_are_refused() {
        let err = resolve(&["--sasl-username", "u"]).unwrap_err();
        assert!(err.contains("--security-protocol"), "{err}");
        let err = resolve(&["--security-protocol", "ssl", "--sasl-username", "u"]).unwrap_err();
        assert!(err.contains("sasl_plaintext or sasl_ssl"), "{err}");
        let err =
            resolve(&["--security-protocol", "sasl_plaintext", "--tls-insecure"]).unwrap_err();
        assert!(err.contains("ssl or sasl_ssl"), "{err}");
        let err = resolve(&[
            "--security-protocol",
            "sasl_ssl",
            "--tls-insecure",
            "--sasl-username",
            "u",
            "--sasl-password",
            "p",
        ])
        .unwrap_err();
        assert!(err.contains("--sasl-mechanism"), "{err}");
        assert!(Cli::try_parse_from(["t", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["t", "--tls-ca", "a", "--tls-insecure"]).is_err());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = resolve(&[
            "--security-protocol",
            "ssl",
            "--tls-ca",
            "/nonexistent/ca.pem",
        ])
        .unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
