//! The schema registry client against a one-request fake registry on
//! loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use datastorm_shards::payload::registry::{key_subject, register, value_subject, RegistryError};

const TIMEOUT: Duration = Duration::from_secs(5);
const SCHEMA: &str = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"note","type":"string"}]}"#;

/// One request as the fake registry saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one request on a fresh loopback port with a canned answer; returns
/// the base URL and where the request it saw arrives.
fn fake_registry(status: u16, content_type: &str, body: &str) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let response = format!(
        "HTTP/1.1 {status} Canned\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let seen = read_request(&stream);
        (&stream).write_all(response.as_bytes()).unwrap();
        let _ = tx.send(seen);
    });
    (format!("http://127.0.0.1:{port}"), rx)
}

fn read_request(stream: &TcpStream) -> Seen {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap().to_owned();
    let path = parts.next().unwrap().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Seen {
        method,
        path,
        headers,
        body,
    }
}

fn seen(rx: &mpsc::Receiver<Seen>) -> Seen {
    rx.recv_timeout(TIMEOUT)
        .expect("the fake registry saw no request")
}

#[test]
fn registration_returns_the_id_and_sends_the_schema() {
    let (base, rx) = fake_registry(
        200,
        "application/vnd.schemaregistry.v1+json",
        r#"{"id":42}"#,
    );
    let id = register(&base, &value_subject("orders"), SCHEMA, TIMEOUT).unwrap();
    assert_eq!(id, 42);

    let req = seen(&rx);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/subjects/orders-value/versions");
    assert_eq!(
        req.header("content-type"),
        Some("application/vnd.schemaregistry.v1+json")
    );
    assert_eq!(req.header("authorization"), None);
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only \"schema\": {body}"
    );
    let schema: serde_json::Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
    assert_eq!(
        schema,
        serde_json::from_str::<serde_json::Value>(SCHEMA).unwrap()
    );
}

#[test]
fn subject_is_url_encoded_and_trailing_slash_ignored() {
    let (base, rx) = fake_registry(200, "application/json", r#"{"id":7}"#);
    let id = register(&format!("{base}/"), "my topic/v2-value", SCHEMA, TIMEOUT).unwrap();
    assert_eq!(id, 7);
    assert_eq!(seen(&rx).path, "/subjects/my%20topic%2Fv2-value/versions");
}

#[test]
fn incompatible_schema_is_a_clear_error() {
    let (base, rx) = fake_registry(
        409,
        "application/vnd.schemaregistry.v1+json",
        r#"{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema"}"#,
    );
    let err = register(&base, "orders-value", SCHEMA, TIMEOUT).unwrap_err();
    seen(&rx);
    match &err {
        RegistryError::Rejected {
            status, error_code, ..
        } => {
            assert_eq!(*status, 409);
            assert_eq!(*error_code, Some(409));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    let text = err.to_string();
    for part in [
        base.as_str(),
        "\"orders-value\"",
        "HTTP 409",
        "error_code 409",
        "incompatible with an earlier schema",
        "not compatible with the subject's latest version",
        "relax compatibility",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

#[test]
fn invalid_schema_is_a_clear_error() {
    let (base, rx) = fake_registry(
        422,
        "application/vnd.schemaregistry.v1+json",
        r#"{"error_code":42201,"message":"Either the input schema or one of its references is invalid"}"#,
    );
    let err = register(&base, "orders-value", "{\"type\":\"nope\"}", TIMEOUT).unwrap_err();
    seen(&rx);
    assert!(matches!(
        err,
        RegistryError::Rejected {
            status: 422,
            error_code: Some(42201),
            ..
        }
    ));
    let text = err.to_string();
    for part in [
        "HTTP 422",
        "error_code 42201",
        "references is invalid",
        "orders-value",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

#[test]
fn non_json_error_body_is_still_clear() {
    let (base, rx) = fake_registry(
        502,
        "text/html",
        "<html><body>502 Bad Gateway</body></html>",
    );
    let err = register(&base, "orders-value", SCHEMA, TIMEOUT).unwrap_err();
    seen(&rx);
    assert!(matches!(
        err,
        RegistryError::Rejected {
            status: 502,
            error_code: None,
            ..
        }
    ));
    let text = err.to_string();
    for part in ["HTTP 502", "502 Bad Gateway", base.as_str(), "orders-value"] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

#[test]
fn success_without_an_id_is_a_clear_error() {
    let (base, rx) = fake_registry(200, "text/plain", "hello");
    let err = register(&base, "orders-value", SCHEMA, TIMEOUT).unwrap_err();
    seen(&rx);
    assert!(matches!(
        err,
        RegistryError::BadResponse { status: 200, .. }
    ));
    assert!(err.to_string().contains("hello"), "{err}");
}

#[test]
fn connection_refused_is_quick_and_clear() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let err = register(&base, "orders-value", SCHEMA, TIMEOUT).unwrap_err();
    assert!(started.elapsed() < TIMEOUT, "took {:?}", started.elapsed());
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    for part in [base.as_str(), "orders-value", "--schema-registry"] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
}

#[test]
fn silent_registry_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // Accepted by the kernel backlog, never answered.
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = register(&base, "orders-value", SCHEMA, timeout).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("no answer within"), "{text}");
    assert!(text.contains("--schema-registry"), "{text}");
    drop(listener);
}

#[test]
fn basic_auth_from_the_url_is_sent_and_the_password_redacted() {
    let (base, rx) = fake_registry(
        401,
        "application/json",
        r#"{"error_code":401,"message":"Unauthorized"}"#,
    );
    // "s3cr:t@pw" percent-encoded in the URL.
    let url = base.replace("http://", "http://alice:s3cr%3At%40pw@");
    let err = register(&url, "orders-value", SCHEMA, TIMEOUT).unwrap_err();
    let req = seen(&rx);
    // base64("alice:s3cr:t@pw")
    assert_eq!(
        req.header("authorization"),
        Some("Basic YWxpY2U6czNjcjp0QHB3")
    );
    let text = err.to_string();
    let debug = format!("{err:?}");
    for secret in ["s3cr", "%3At", "t@pw"] {
        assert!(!text.contains(secret), "password leaked: {text}");
        assert!(!debug.contains(secret), "password leaked: {debug}");
    }
    assert!(text.contains("alice"), "{text}");
    assert!(text.contains("HTTP 401"), "{text}");
}

#[test]
fn password_is_redacted_when_unreachable_and_when_invalid() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = register(
        &format!("http://bob:hunter2@127.0.0.1:{port}"),
        "orders-value",
        SCHEMA,
        TIMEOUT,
    )
    .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");

    for url in [
        "bob:hunter2@127.0.0.1:8081",
        "https://bob:hunter2@host:8081",
    ] {
        let err = register(url, "orders-value", SCHEMA, TIMEOUT).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
}

#[test]
fn topic_name_strategy_subjects() {
    assert_eq!(value_subject("orders"), "orders-value");
    assert_eq!(key_subject("orders"), "orders-key");
}
