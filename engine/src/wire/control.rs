//! Control-plane requests (ApiVersions, Metadata, CreateTopics, ...) encoded
//! and decoded with kafka-protocol. They run a few times per run, so the
//! generic codec's allocations do not matter here.

use super::{guard, WireError};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Encodes `req` as a complete frame (size prefix included).
pub fn encode_request<R: Request>(
    req: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<BytesMut, WireError> {
    let api = api_name(R::KEY);
    let err = |e: anyhow::Error| WireError::Encode {
        api,
        detail: e.to_string(),
    };
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(err)?;
    req.encode(&mut buf, version).map_err(err)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// Decodes the response frame body (without size prefix) to `R`'s request.
///
/// The body is walked by `guard::check_response` first, so arbitrary bytes
/// give an error rather than a panic or an allocation sized by a hostile
/// array count.
pub fn decode_response<R: Request>(
    frame: &[u8],
    version: i16,
    expected_correlation_id: i32,
) -> Result<R::Response, WireError> {
    let api = api_name(R::KEY);
    let err = |e: anyhow::Error| WireError::Decode {
        api,
        detail: e.to_string(),
    };
    let mut buf = Bytes::copy_from_slice(frame);
    let header =
        ResponseHeader::decode(&mut buf, R::Response::header_version(version)).map_err(err)?;
    if header.correlation_id != expected_correlation_id {
        return Err(WireError::CorrelationMismatch {
            expected: expected_correlation_id,
            got: header.correlation_id,
        });
    }
    let decoded = guard::check_response(R::KEY, &buf, version)
        .and_then(|()| R::Response::decode(&mut buf.clone(), version).map_err(err));
    match decoded {
        // A broker that does not speak the ApiVersions version asked for
        // answers UNSUPPORTED_VERSION in v0 (whatever version was asked), as
        // Kafka does; read it as v0 so that the caller can retry.
        Err(_)
            if R::KEY == ApiKey::ApiVersions as i16
                && version > 0
                && buf.starts_with(&UNSUPPORTED_VERSION.to_be_bytes()) =>
        {
            guard::check_response(R::KEY, &buf, 0)?;
            R::Response::decode(&mut buf, 0).map_err(err)
        }
        other => other,
    }
}

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// The API's protocol name, for messages.
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Fetch) => "Fetch",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest};

    fn frame(corr: i32, body: &[u8]) -> Vec<u8> {
        let mut f = corr.to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn unsupported_version_answer_in_v0_is_read_as_v0() {
        let resp = ApiVersionsResponse::default()
            .with_error_code(UNSUPPORTED_VERSION)
            .with_api_keys(vec![ApiVersion::default()
                .with_api_key(18)
                .with_max_version(2)]);
        let mut body = BytesMut::new();
        resp.encode(&mut body, 0).unwrap();
        // ApiVersions responses always use header v0: no tagged fields.
        let got = decode_response::<ApiVersionsRequest>(&frame(9, &body), 3, 9).unwrap();
        assert_eq!(got.error_code, UNSUPPORTED_VERSION);
        assert_eq!(got.api_keys.len(), 1);
        assert_eq!(got.api_keys[0].max_version, 2);
    }

    #[test]
    fn hostile_responses_are_errors() {
        // Shorter than a correlation id.
        for len in 0..4 {
            assert!(decode_response::<MetadataRequest>(&[0; 3][..len], 12, 0).is_err());
        }
        // Metadata v12 claiming 2^31 brokers: refused before kafka-protocol
        // would reserve space for them.
        let huge = frame(1, &[0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x08]);
        assert!(matches!(
            decode_response::<MetadataRequest>(&huge, 12, 1),
            Err(WireError::Malformed(_))
        ));
        // ApiVersions v3 claiming u32::MAX api keys.
        let huge = frame(1, &[0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_response::<ApiVersionsRequest>(&huge, 3, 1).is_err());
    }
}
