//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the same envelope
//! and stable codes as every other error.

use crate::api::error::ApiError;
use crate::caller::Caller;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body: 400 `malformed_json` when it does not parse, 422 `validation_error` when a field
/// has the wrong type or is missing, 415 without a JSON content type, 413 when too large.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid_field("body", e.body_text())),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("malformed_json", e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with 'Content-Type: application/json'",
            )),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::too_large("payload_too_large", "the request body is too large"))
            }
            Err(e) => Err(ApiError::bad_request("bad_request", e.body_text())),
        }
    }
}

/// The `Idempotency-Key` header, if sent (checked by the idempotency service).
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKey(None)),
            Some(v) => v.to_str().map(|k| IdempotencyKey(Some(k.to_owned()))).map_err(|_| {
                ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be printable ASCII")
            }),
        }
    }
}

/// The `Last-Event-ID` header of a re-attaching event stream, if sent: 400 when not a number.
pub struct LastEventId(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get("last-event-id") else { return Ok(LastEventId(None)) };
        v.to_str().ok().and_then(|v| v.trim().parse().ok()).map(|n| LastEventId(Some(n))).ok_or_else(|| {
            ApiError::bad_request("bad_request", "Last-Event-ID must be an event id (a number)")
        })
    }
}

/// A query string: 422 `validation_error` when it does not fit.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::invalid_field("query", e.body_text()))
            }
            Err(e) => Err(ApiError::invalid_field("query", e.body_text())),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("no API key"))
    }
}

/// Page size and offset from a query: limit 1-1000 (default 50), offset ≥ 0 (default 0).
pub fn page(limit: Option<i64>, offset: Option<i64>) -> Result<(u32, u64), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be between 1 and 1000"));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_field("offset", "must not be negative"));
    }
    Ok((limit as u32, offset as u64))
}

/// A path parameter: 400 `bad_request` when it cannot be decoded.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(e) => Err(ApiError::bad_request("bad_request", e.body_text())),
        }
    }
}
