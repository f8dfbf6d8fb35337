//! Connect-RPC with the JSON codec, as E2B's SDKs speak it to envd: unary calls (JSON in, JSON
//! out, errors as `{"code": "<name>", "message": ...}` with the matching HTTP status) and
//! server streams (5-byte envelopes both ways, ended by an end-of-stream envelope that carries
//! the error, if any). Generic over the messages, so each service is a set of typed handlers.

use crate::api::error::{AnsweredCode, ApiError, connect_code, connect_status};
use crate::service::error::ServiceError;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Content type of unary Connect JSON messages.
pub const UNARY_JSON: &str = "application/json";
/// Content type of streamed Connect JSON messages.
pub const STREAM_JSON: &str = "application/connect+json";
/// Envelope flag of the end-of-stream message.
pub const END_STREAM: u8 = 0x02;
/// Envelope flag of a compressed message (never sent; refused when received).
const COMPRESSED: u8 = 0x01;

/// A Connect error: a code name (`not_found`, `invalid_argument`, ...) and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectError {
    /// The code's name.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// The server's stable code behind it, when it came from one (logged, not sent).
    #[serde(skip)]
    pub cause: Option<&'static str>,
}

impl ConnectError {
    /// An error with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ConnectError { code, message: message.into(), cause: None }
    }

    /// `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_argument", message)
    }

    /// `unimplemented`, for a method this server does not offer (yet).
    pub fn unimplemented(method: &str) -> Self {
        Self::new("unimplemented", format!("{method} is not implemented by this server"))
    }
}

impl From<ApiError> for ConnectError {
    fn from(e: ApiError) -> Self {
        ConnectError { code: connect_code(&e).0, message: e.message, cause: Some(e.code) }
    }
}

impl From<ServiceError> for ConnectError {
    fn from(e: ServiceError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let status = connect_status(self.code);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = ([(header::CONTENT_TYPE, UNARY_JSON)], (status, body)).into_response();
        if let Some(code) = self.cause {
            resp.extensions_mut().insert(AnsweredCode(code));
        }
        resp
    }
}

/// One enveloped message: the flags, the length (4 bytes, big-endian), the payload.
pub fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u8(flags);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// The end-of-stream envelope: `{}`, or `{"error": {...}}`.
pub fn end_stream(error: Option<&ConnectError>) -> Bytes {
    let payload = match error {
        None => b"{}".to_vec(),
        Some(e) => serde_json::to_vec(&serde_json::json!({"error": e})).unwrap_or_default(),
    };
    envelope(END_STREAM, &payload)
}

/// The one message of a server-streaming request's body: its JSON payload.
pub fn decode_envelope(body: &[u8]) -> Result<&[u8], ConnectError> {
    let header =
        body.get(..5).ok_or_else(|| ConnectError::invalid("the request is not an enveloped message"))?;
    if header[0] & COMPRESSED != 0 {
        return Err(ConnectError::new("internal", "compressed messages are not supported"));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    body.get(5..5 + len).ok_or_else(|| ConnectError::invalid("the enveloped message is cut short"))
}

fn parse<T: DeserializeOwned>(json: &[u8]) -> Result<T, ConnectError> {
    let json = if json.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { json };
    serde_json::from_slice(json).map_err(|e| ConnectError::invalid(format!("invalid request message: {e}")))
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The request message of a unary call (JSON codec only).
pub fn unary_request<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ConnectError> {
    let ct = content_type(headers);
    if !ct.starts_with(UNARY_JSON) {
        return Err(ConnectError::new(
            "invalid_argument",
            format!("unsupported content type {ct:?}; use {UNARY_JSON}"),
        ));
    }
    parse(body)
}

/// The response of a unary call.
pub fn unary_response<T: Serialize>(result: Result<T, ConnectError>) -> Response {
    match result
        .and_then(|m| serde_json::to_vec(&m).map_err(|e| ConnectError::new("internal", e.to_string())))
    {
        Ok(body) => ([(header::CONTENT_TYPE, UNARY_JSON)], body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The request message of a server-streaming call.
pub fn stream_request<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ConnectError> {
    let ct = content_type(headers);
    if !ct.starts_with(STREAM_JSON) {
        return Err(ConnectError::new(
            "invalid_argument",
            format!("unsupported content type {ct:?}; use {STREAM_JSON}"),
        ));
    }
    parse(decode_envelope(body)?)
}

/// A server stream's response: 200, each message enveloped as it comes, then the end-of-stream
/// envelope carrying the first error (which ends the stream). Nothing is buffered.
pub fn stream_response<T, S>(messages: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, ConnectError>> + Send + 'static,
{
    let body = futures_util::stream::unfold(Some(Box::pin(messages)), |state| async move {
        let mut messages = state?;
        let chunk = match messages.next().await {
            Some(Ok(m)) => match serde_json::to_vec(&m) {
                Ok(json) => return Some((envelope(0, &json), Some(messages))),
                Err(e) => end_stream(Some(&ConnectError::new("internal", e.to_string()))),
            },
            Some(Err(e)) => end_stream(Some(&e)),
            None => end_stream(None),
        };
        Some((chunk, None))
    });
    let mut resp = Response::new(Body::from_stream(body.map(Ok::<_, std::convert::Infallible>)));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_JSON));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// A server stream's response from its messages, or one that ends at once with the error that
/// kept it from starting.
pub fn stream_result<T, S>(started: Result<S, ConnectError>) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T, ConnectError>> + Send + 'static,
{
    match started {
        Ok(messages) => stream_response(messages.boxed()),
        Err(e) => stream_response(futures_util::stream::iter([Err::<T, _>(e)]).boxed()),
    }
}

/// proto3-JSON for `int64`/`uint64` fields: written as strings, read from strings or numbers.
pub mod int64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the number as a string.
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// Reads a string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(i64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(n),
            Either::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    async fn body_bytes(resp: Response) -> Vec<u8> {
        http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes().to_vec()
    }

    #[test]
    fn envelopes_round_trip() {
        let e = envelope(0, br#"{"path":"/a"}"#);
        assert_eq!(&e[..5], &[0, 0, 0, 0, 13]);
        assert_eq!(decode_envelope(&e).unwrap(), br#"{"path":"/a"}"#);
        assert_eq!(decode_envelope(&e[..10]).unwrap_err().code, "invalid_argument");
        assert_eq!(decode_envelope(&[0, 0]).unwrap_err().code, "invalid_argument");
        assert_eq!(decode_envelope(&envelope(1, b"{}")).unwrap_err().code, "internal");
    }

    #[test]
    fn end_of_stream_carries_the_error() {
        assert_eq!(&end_stream(None)[..], &[2, 0, 0, 0, 2, b'{', b'}']);
        let e = end_stream(Some(&ConnectError::new("not_found", "gone")));
        assert_eq!(e[0], END_STREAM);
        assert_eq!(&e[5..], br#"{"error":{"code":"not_found","message":"gone"}}"#);
    }

    #[test]
    fn requests_need_their_content_type() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let v: serde_json::Value = unary_request(&h, br#"{"path":"x"}"#).unwrap();
        assert_eq!(v["path"], "x");
        let empty: serde_json::Value = unary_request(&h, b"").unwrap();
        assert!(empty.as_object().unwrap().is_empty(), "an empty body is the empty message");
        assert_eq!(unary_request::<serde_json::Value>(&h, b"{").unwrap_err().code, "invalid_argument");
        assert_eq!(
            stream_request::<serde_json::Value>(&h, &envelope(0, b"{}")).unwrap_err().code,
            "invalid_argument"
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAM_JSON));
        let v: serde_json::Value = stream_request(&h, &envelope(0, br#"{"a":1}"#)).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[tokio::test]
    async fn unary_errors_have_the_matching_status() {
        let resp = unary_response::<()>(Err(ConnectError::new("already_exists", "there")));
        assert_eq!(resp.status(), StatusCode::CONFLICT);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], UNARY_JSON);
        assert_eq!(body_bytes(resp).await, br#"{"code":"already_exists","message":"there"}"#);
        let ok = unary_response(Ok(serde_json::json!({})));
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body_bytes(ok).await, b"{}");
        assert_eq!(ConnectError::unimplemented("m").into_response().status(), StatusCode::NOT_IMPLEMENTED);
    }

    #[tokio::test]
    async fn streams_end_with_the_end_of_stream_envelope() {
        let ok = stream_response(futures_util::stream::iter([Ok(serde_json::json!({"start": {}}))]));
        assert_eq!(ok.headers()[header::CONTENT_TYPE], STREAM_JSON);
        let mut expected = envelope(0, br#"{"start":{}}"#).to_vec();
        expected.extend_from_slice(&end_stream(None));
        assert_eq!(body_bytes(ok).await, expected);
        let failed = stream_response(futures_util::stream::iter([
            Ok(serde_json::json!(1)),
            Err(ConnectError::new("internal", "x")),
            Ok(serde_json::json!(2)),
        ]));
        assert_eq!(failed.status(), StatusCode::OK);
        let mut expected = envelope(0, b"1").to_vec();
        expected.extend_from_slice(&end_stream(Some(&ConnectError::new("internal", "x"))));
        assert_eq!(body_bytes(failed).await, expected, "the error ends the stream");
    }

    #[test]
    fn int64_is_a_string_both_ways() {
        #[derive(Serialize, serde::Deserialize)]
        struct M {
            #[serde(with = "int64")]
            size: i64,
        }
        assert_eq!(serde_json::to_string(&M { size: 12 }).unwrap(), r#"{"size":"12"}"#);
        assert_eq!(serde_json::from_str::<M>(r#"{"size":"7"}"#).unwrap().size, 7);
        assert_eq!(serde_json::from_str::<M>(r#"{"size":7}"#).unwrap().size, 7);
    }

    #[test]
    fn service_errors_get_connect_codes() {
        let e: ConnectError = ServiceError::not_found("file_not_found", "no").into();
        assert_eq!(e.code, "not_found");
        let e: ConnectError = ServiceError::conflict("already_exists", "there").into();
        assert_eq!(e.code, "already_exists");
        let e: ConnectError = ServiceError::conflict("not_a_directory", "file").into();
        assert_eq!(e.code, "invalid_argument");
    }
}
