//! Who is calling: the API key a request came with, as the services see it.

use crate::service::error::ServiceError;

/// The key behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id (`key_…`), owner of the sessions it creates.
    pub key_id: String,
    /// Admin keys see every session and manage templates, keys and the deployment.
    pub is_admin: bool,
}

impl Caller {
    /// Refuses (forbidden) unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ServiceError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ServiceError::Forbidden("this operation needs an admin API key".into()))
        }
    }

    /// Whether the caller may see something owned by `owner`.
    pub fn can_see(&self, owner: &str) -> bool {
        self.is_admin || self.key_id == owner
    }
}
