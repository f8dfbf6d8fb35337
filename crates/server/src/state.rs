//! What every handler can reach: settings, store, runtime, the services, metrics.

use crate::metrics::Metrics;
use crate::service::access::AccessTokens;
use crate::service::contexts::Contexts;
use crate::service::dependencies::Dependencies;
use crate::service::egress::Egress;
use crate::service::executions::Executions;
use crate::service::files::Files;
use crate::service::idempotency::Idempotency;
use crate::service::keys::Keys;
use crate::service::lifecycle::Lifecycle;
use crate::service::pools::Pools;
use crate::service::processes::Processes;
use crate::service::sandboxes::Sandboxes;
use crate::service::sessions::Sessions;
use crate::service::templates::Templates;
use crate::service::workspaces::WorkspaceStore;
use crate::settings::Settings;
use sandbox_runtime::Runtime;
use sandbox_store::Store;
use std::sync::Arc;
use std::time::Instant;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Settings in effect.
    pub settings: Arc<Settings>,
    /// The metadata store.
    pub store: Arc<dyn Store>,
    /// The runtime backend.
    pub runtime: Arc<dyn Runtime>,
    /// API keys.
    pub keys: Arc<Keys>,
    /// Templates.
    pub templates: Arc<Templates>,
    /// Session lifecycle.
    pub sessions: Arc<Sessions>,
    /// Sessions' files.
    pub files: Arc<Files>,
    /// Executions.
    pub executions: Arc<Executions>,
    /// Warm pools.
    pub pools: Arc<Pools>,
    /// The background loops and leadership.
    pub lifecycle: Arc<Lifecycle>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Code contexts.
    pub contexts: Arc<Contexts>,
    /// Processes started on their own in sessions' sandboxes.
    pub processes: Arc<Processes>,
    /// Idempotency keys of session creates and executions.
    pub idempotency: Arc<Idempotency>,
    /// Access tokens of the E2B-compatible API.
    pub access_tokens: Arc<AccessTokens>,
    /// The default code context of each language per sandbox, for the E2B-compatible API and MCP.
    pub e2b_contexts: Arc<crate::api::e2b::interpreter::DefaultContexts>,
    /// When the server started.
    pub started: Instant,
}

impl AppState {
    /// Wires the services together.
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        workspaces: Arc<dyn WorkspaceStore>,
    ) -> Self {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::default());
        let sandboxes = Arc::new(Sandboxes::new(settings.clone(), runtime.clone(), workspaces));
        let pools = Arc::new(Pools::new(
            settings.clone(),
            store.clone(),
            runtime.clone(),
            sandboxes.clone(),
            metrics.clone(),
        ));
        let egress = Arc::new(
            Egress::new(&settings.egress, store.clone(), metrics.clone())
                .expect("the egress settings were checked when they were loaded"),
        );
        let dependencies = Arc::new(Dependencies::new(
            settings.clone(),
            store.clone(),
            runtime.clone(),
            sandboxes.clone(),
            egress,
        ));
        let sessions = Arc::new(Sessions::new(
            settings.clone(),
            store.clone(),
            runtime.clone(),
            metrics.clone(),
            sandboxes,
            pools.clone(),
            dependencies,
        ));
        let contexts = Arc::new(Contexts::new(settings.clone(), store.clone(), sessions.clone()));
        let executions = Arc::new(Executions::new(
            settings.clone(),
            store.clone(),
            sessions.clone(),
            contexts.clone(),
            metrics.clone(),
        ));
        let lifecycle = Arc::new(Lifecycle::new(
            settings.clone(),
            store.clone(),
            sessions.clone(),
            executions.clone(),
            pools.clone(),
            metrics.clone(),
        ));
        AppState {
            access_tokens: Arc::new(AccessTokens::new(settings.data_dir.clone())),
            e2b_contexts: Arc::default(),
            idempotency: Arc::new(Idempotency::new(store.clone())),
            keys: Arc::new(Keys::new(store.clone())),
            templates: Arc::new(Templates::new(settings.templates.clone(), store.clone(), runtime.clone())),
            files: Arc::new(Files::new(sessions.clone(), settings.storage.clone())),
            processes: Arc::new(Processes::new(settings.clone(), sessions.clone())),
            settings,
            store,
            runtime,
            sessions,
            executions,
            contexts,
            pools,
            lifecycle,
            metrics,
            started: Instant::now(),
        }
    }
}
