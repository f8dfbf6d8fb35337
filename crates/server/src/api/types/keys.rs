//! Bodies of the API key routes.

use chrono::{DateTime, Utc};
use sandbox_core::model::ApiKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// A name to recognise the key by.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub name: String,
    /// Whether it is an admin key.
    #[serde(default)]
    pub is_admin: bool,
    /// Make the secret `e2b_` and 40 hex digits (instead of `sk_…`): the format some E2B SDK
    /// versions check before sending a key (see docs/e2b.md).
    #[serde(default)]
    pub e2b_format: bool,
}

/// An API key (never its secret, except once on creation).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyResponse {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// First characters of the secret.
    pub prefix: String,
    /// Admin key.
    pub is_admin: bool,
    /// Created.
    #[serde(with = "crate::api::types::time::millis")]
    pub created_at: DateTime<Utc>,
    /// Revoked.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret: only in the answer to a creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<ApiKey> for KeyResponse {
    fn from(k: ApiKey) -> Self {
        KeyResponse {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            is_admin: k.is_admin,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}
