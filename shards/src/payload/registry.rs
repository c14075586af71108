//! A small client for Confluent-compatible schema registries: registers an
//! Avro schema under a subject and returns the schema id that goes into the
//! wire-format header of every record.
//!
//! Blocking and plain HTTP (no TLS stack is built in): it runs once, at
//! startup, before any shard starts. Basic auth comes from the URL
//! (`http://user:pass@host:port`); the password never appears in an error.

use std::io;
use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;

/// The media type the registry speaks (v1 API).
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// The most of a response body read back (ids and errors are tiny).
const BODY_LIMIT: u64 = 64 * 1024;
/// The most of a non-JSON error body quoted in an error.
const QUOTE_LIMIT: usize = 200;

/// Characters escaped in a subject path segment: all but RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a schema could not be registered. `url` fields are redacted: they show
/// the user name but never the password.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(
        "invalid schema registry URL {url:?}: {reason}; check --schema-registry \
         (expected http://[user:password@]host:port)"
    )]
    InvalidUrl { url: String, reason: &'static str },

    #[error(
        "could not reach the schema registry at {url} to register subject {subject:?}: \
         {detail}; check --schema-registry and that the registry is running"
    )]
    Unreachable {
        url: String,
        subject: String,
        detail: String,
    },

    #[error(
        "schema registry at {url} refused to register subject {subject:?}: HTTP {status}, \
         {}: {hint}",
        describe(*.error_code, .message)
    )]
    Rejected {
        url: String,
        subject: String,
        status: u16,
        /// The registry's `error_code` (e.g. 409, 42201), when it sent JSON.
        error_code: Option<i64>,
        /// The registry's `message`, or the start of a non-JSON body.
        message: String,
        hint: &'static str,
    },

    #[error(
        "schema registry at {url} gave an unusable answer for subject {subject:?} \
         (HTTP {status}): {detail}; check that --schema-registry points at a \
         Confluent-compatible schema registry"
    )]
    BadResponse {
        url: String,
        subject: String,
        status: u16,
        detail: String,
    },
}

fn describe(error_code: Option<i64>, message: &str) -> String {
    match error_code {
        Some(code) => format!("error_code {code}, message {message:?}"),
        None => format!("message {message:?}"),
    }
}

/// The subject Confluent's default TopicNameStrategy uses for record values.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The subject Confluent's default TopicNameStrategy uses for record keys.
pub fn key_subject(topic: &str) -> String {
    format!("{topic}-key")
}

/// Registers `schema_json` (an Avro schema) under `subject` with a
/// Confluent-compatible schema registry at `base_url` (e.g.
/// `http://127.0.0.1:8081`, optionally `http://user:pass@host:port`) and
/// returns the schema id. Registering a schema the subject already holds
/// returns its existing id. The whole exchange is bounded by `timeout`.
pub fn register(
    base_url: &str,
    subject: &str,
    schema_json: &str,
    timeout: Duration,
) -> Result<u32, RegistryError> {
    let target = Target::parse(base_url)?;
    let (status, text) = post_schema(&target, subject, schema_json, timeout)?;
    if !(200..300).contains(&status) {
        let (error_code, message) = parse_error(&text);
        return Err(RegistryError::Rejected {
            url: target.shown,
            subject: subject.to_owned(),
            status,
            error_code,
            message,
            hint: hint(status, error_code),
        });
    }
    schema_id(&text, status, &target.shown, subject)
}

/// Posts `schema_json` as a new version of `subject`; returns the HTTP
/// status and the response body.
fn post_schema(
    target: &Target,
    subject: &str,
    schema_json: &str,
    timeout: Duration,
) -> Result<(u16, String), RegistryError> {
    let url = format!(
        "{}/subjects/{}/versions",
        target.base,
        utf8_percent_encode(subject, SEGMENT)
    );
    let shown = &target.shown;
    let body = serde_json::json!({ "schema": schema_json }).to_string();
    let agent = target.agent(timeout);
    let mut request = agent.post(&url).content_type(CONTENT_TYPE).header(
        "Accept",
        "application/vnd.schemaregistry.v1+json, application/json",
    );
    if let Some(auth) = &target.authorization {
        request = request.header("Authorization", auth);
    }

    let mut response = request
        .send(body)
        .map_err(|e| transport_error(e, shown, subject, timeout))?;
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .map_err(|e| {
            if response_failed_in_transport(&e) {
                transport_error(e, shown, subject, timeout)
            } else {
                RegistryError::BadResponse {
                    url: shown.clone(),
                    subject: subject.to_owned(),
                    status,
                    detail: format!("could not read the response body: {e}"),
                }
            }
        })?;
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// The schema id in a successful registration's body, `{"id": N}`.
fn schema_id(text: &str, status: u16, shown: &str, subject: &str) -> Result<u32, RegistryError> {
    let bad = |detail| RegistryError::BadResponse {
        url: shown.to_owned(),
        subject: subject.to_owned(),
        status,
        detail,
    };
    let id = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64));
    match id.map(u32::try_from) {
        Some(Ok(id)) => Ok(id),
        Some(Err(_)) => Err(bad("the schema id does not fit in 32 bits".to_owned())),
        None => Err(bad(format!("expected {{\"id\": N}}, got {}", quote(text)))),
    }
}

/// A parsed `--schema-registry` URL.
struct Target {
    /// Scheme, host, port and path prefix, without user info or trailing '/'.
    base: String,
    /// The URL as shown in errors: user name kept, password replaced.
    shown: String,
    /// `Basic ...` when the URL carried user info.
    authorization: Option<String>,
    /// Whether the host is this machine.
    loopback: bool,
}

impl Target {
    fn parse(raw: &str) -> Result<Target, RegistryError> {
        let invalid = |reason| RegistryError::InvalidUrl {
            url: redact(raw),
            reason,
        };
        let trimmed = raw.trim().trim_end_matches('/');
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            return Err(invalid("it has no http:// scheme"));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" => {}
            "https" => {
                return Err(invalid(
                    "https is not supported (this build has no TLS); use http://",
                ))
            }
            _ => return Err(invalid("only http:// is supported")),
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.starts_with(['?', '#']) {
            return Err(invalid("it must not carry a query or fragment"));
        }
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(invalid("it has no host"));
        }

        let mut authorization = None;
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let user = percent_decode_str(user)
                .decode_utf8()
                .map_err(|_| invalid("the user name is not valid percent-encoded UTF-8"))?;
            let password = percent_decode_str(password)
                .decode_utf8()
                .map_err(|_| invalid("the password is not valid percent-encoded UTF-8"))?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            authorization = Some(format!("Basic {token}"));
        }

        let hostname = match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => name,
            _ => host,
        };
        let loopback = hostname.eq_ignore_ascii_case("localhost")
            || hostname.starts_with("127.")
            || hostname == "[::1]";

        Ok(Target {
            base: format!("{scheme}://{host}{path}"),
            shown: redact(trimmed),
            authorization,
            loopback,
        })
    }

    /// An HTTP client for this registry, the whole exchange bounded by
    /// `timeout`.
    fn agent(&self, timeout: Duration) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false);
        // A registry on this machine is never reached through a proxy.
        let config = if self.loopback {
            config.proxy(None)
        } else {
            config
        };
        config.build().into()
    }
}

/// `raw` with any password in its user info replaced by `***`.
fn redact(raw: &str) -> String {
    let (prefix, rest) = match raw.find("://") {
        Some(i) => raw.split_at(i + 3),
        None => ("", raw),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let mask = if userinfo.contains(':') { ":***" } else { "" };
            format!("{prefix}{user}{mask}{host}{tail}")
        }
        None => raw.to_owned(),
    }
}

/// Whether a body-read error is a transport failure (timeout, reset).
fn response_failed_in_transport(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Timeout(_) | ureq::Error::Io(_))
}

fn transport_error(e: ureq::Error, url: &str, subject: &str, timeout: Duration) -> RegistryError {
    let detail = match &e {
        ureq::Error::Timeout(_) => format!("no answer within {timeout:?}"),
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
            format!("no answer within {timeout:?}")
        }
        ureq::Error::HostNotFound => "host not found".to_owned(),
        _ => e.to_string(),
    };
    RegistryError::Unreachable {
        url: url.to_owned(),
        subject: subject.to_owned(),
        detail,
    }
}

/// The registry's `error_code` and `message`, or the quoted body when it is
/// not the registry's JSON error shape.
fn parse_error(text: &str) -> (Option<i64>, String) {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let code = value.get("error_code").and_then(serde_json::Value::as_i64);
        let message = value.get("message").and_then(serde_json::Value::as_str);
        if code.is_some() || message.is_some() {
            return (code, message.unwrap_or("(none)").to_owned());
        }
    }
    (None, quote(text))
}

/// The start of a body, for an error message.
fn quote(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

fn hint(status: u16, error_code: Option<i64>) -> &'static str {
    match (status, error_code) {
        (409, _) => {
            "the schema is not compatible with the subject's latest version: \
             use another subject or relax compatibility"
        }
        (422, Some(42201)) | (422, None) => {
            "the registry found the schema invalid: check the Avro schema"
        }
        (422, _) => "the registry rejected the request: check the schema and the subject name",
        (401, _) => {
            "the registry did not accept the credentials: give valid ones in \
             --schema-registry (http://user:password@host:port)"
        }
        (403, _) => "the credentials lack permission to register schemas under this subject",
        (404, _) => {
            "no registry API at this address: --schema-registry should be the registry's \
             root URL"
        }
        (500..=599, _) => {
            "the registry (or a proxy in front of it) failed: check its logs and its Kafka cluster"
        }
        _ => "check --schema-registry",
    }
}
