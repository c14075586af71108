//! Control-plane requests (ApiVersions, Metadata, CreateTopics, ...) encoded
//! and decoded with kafka-protocol. They run a few times per run, so the
//! generic codec's allocations do not matter here.

use super::WireError;
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
    R::Response::decode(&mut buf, version).map_err(err)
}

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
