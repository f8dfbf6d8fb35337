//! Server-Sent Events: how each event is written, and the schemas of the events' data that the
//! OpenAPI document lists (an event's `data` is one JSON document).

use crate::api::error::ApiError;
use axum::response::sse::Event;
use serde::Serialize;
use utoipa::ToSchema;

/// An event named `name` whose data is `value` as JSON.
pub fn json_event(name: &str, value: &impl Serialize) -> Event {
    Event::default().event(name).data(serde_json::to_string(value).unwrap_or_default())
}

/// The `error` event of every stream: the error envelope of every error response
/// ([`ErrorBody`](crate::api::error::ErrorBody)).
pub fn error_event(e: ApiError) -> Event {
    json_event("error", &e.body())
}

/// The data of a `stdout`, `stderr` or `pty` event: a chunk of output (an execution's as text;
/// a process's as base64, as it may not be text).
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputChunk {
    /// The chunk.
    pub data: String,
}

/// The data of a process stream's `start` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessStarted {
    /// The process's id in its sandbox.
    pub pid: u32,
}
