//! `Idempotency-Key`: a client that retries a request with the same key gets what the first
//! request made instead of a second one. Keys are scoped per API key, bound to the operation and
//! the request they were first used with, and kept for a day.

use crate::caller::Caller;
use crate::service::error::ServiceError;
use chrono::{Duration, Utc};
use sandbox_core::model::IdempotencyRecord;
use sandbox_store::Store;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::hours(24);

/// The longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// What claiming a key found.
pub enum Claim {
    /// The key is new: do the work, then [`Idempotency::settle`] the ticket.
    New(Ticket),
    /// The key was used for this request before, which made this resource (a session or
    /// execution id): answer with it.
    Done(String),
}

/// A claimed key, to complete or release.
#[derive(Debug)]
pub struct Ticket {
    owner_key_id: String,
    key: String,
}

/// Idempotency keys.
pub struct Idempotency {
    store: Arc<dyn Store>,
}

impl Idempotency {
    /// The service.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Idempotency { store }
    }

    /// Claims `key` for `operation` with `request`: new, done before (the same operation and
    /// request), 409 `idempotency_key_in_use` while the first request runs, 422
    /// `idempotency_key_reused` for another request.
    pub async fn claim(
        &self,
        caller: &Caller,
        key: &str,
        operation: &str,
        request: &impl Serialize,
    ) -> Result<Claim, ServiceError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServiceError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1-{MAX_KEY_LEN} printable ASCII characters without spaces"),
            ));
        }
        let body = serde_json::to_vec(request).map_err(ServiceError::internal)?;
        let fingerprint: String = Sha256::new()
            .chain_update(operation)
            .chain_update([0])
            .chain_update(&body)
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let now = Utc::now();
        let record = IdempotencyRecord {
            owner_key_id: caller.key_id.clone(),
            key: key.to_owned(),
            operation: operation.to_owned(),
            fingerprint,
            resource_id: None,
            created_at: now,
        };
        let held = match self.store.claim_idempotency_key(&record, now - KEY_TTL).await? {
            None => return Ok(Claim::New(Ticket { owner_key_id: record.owner_key_id, key: record.key })),
            Some(held) => held,
        };
        if held.operation != record.operation || held.fingerprint != record.fingerprint {
            return Err(ServiceError::refused(
                "idempotency_key_reused",
                format!(
                    "Idempotency-Key {key:?} was used for another request; use a new key for a new request"
                ),
                None,
            ));
        }
        match held.resource_id {
            Some(done) => Ok(Claim::Done(done)),
            None => Err(ServiceError::conflict(
                "idempotency_key_in_use",
                format!(
                    "a request with Idempotency-Key {key:?} is still being carried out; retry once it is done"
                ),
            )),
        }
    }

    /// What a retry gets when what its key's first request made no longer exists (deleted, or
    /// past its retention): 409 `idempotency_key_used` (running it again would do it twice).
    pub fn gone(key: &str, resource_id: &str) -> ServiceError {
        ServiceError::conflict(
            "idempotency_key_used",
            format!(
                "the request with Idempotency-Key {key:?} already ran and made {resource_id}, which no longer exists; use a new key for a new request"
            ),
        )
    }

    /// Settles the key the request held, if any: records what it made (`Some` resource id), or
    /// frees the key of a request that failed so a retry may carry it out.
    pub async fn settle(&self, ticket: Option<Ticket>, made: Option<&str>) {
        let Some(t) = ticket else { return };
        let done = match made {
            Some(id) => self.store.complete_idempotency_key(&t.owner_key_id, &t.key, id).await,
            None => self.store.release_idempotency_key(&t.owner_key_id, &t.key).await,
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "could not settle the idempotency key of a request");
        }
    }
}
