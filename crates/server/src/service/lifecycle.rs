//! The background loops, run by one replica at a time: the holder of a lease in the store.
//! Each pass reconciles sessions with the runtime, collects overdue executions, ends idle and
//! old sessions, purges old records; the pool loop keeps warm pools full. A replica holds the
//! lease under its [`Identity`], which a restarted process keeps: it leads again at once.
//! Refilling after a claim does not wait for the lease: every replica refills after its own claims.

use crate::metrics::Metrics;
use crate::service::executions::{Executions, Recovery};
use crate::service::identity::Identity;
use crate::service::pools::Pools;
use crate::service::sessions::Sessions;
use crate::settings::Settings;
use sandbox_store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The lease's name in the store.
const LEASE: &str = "lifecycle";

/// How often the pool loop looks, when no claim wakes it sooner.
const POOL_INTERVAL: Duration = Duration::from_secs(2);

/// The lifecycle loops and who runs them.
pub struct Lifecycle {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    sessions: Arc<Sessions>,
    executions: Arc<Executions>,
    pools: Arc<Pools>,
    metrics: Arc<Metrics>,
    /// This process's id in the lease.
    pub instance_id: String,
    /// What keeps `instance_id` this process's alone (`None`: a one-off id).
    _identity: Option<Identity>,
    leader: AtomicBool,
}

impl Lifecycle {
    /// The loops (not started).
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        sessions: Arc<Sessions>,
        executions: Arc<Executions>,
        pools: Arc<Pools>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let identity = Identity::take(&settings.data_dir)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no lasting replica identity; after a restart, leading waits for the lease to expire")
            })
            .ok();
        let instance_id = identity.as_ref().map_or_else(Identity::one_off, |i| i.name().to_owned());
        Lifecycle {
            settings,
            store,
            sessions,
            executions,
            pools,
            metrics,
            instance_id,
            _identity: identity,
            leader: AtomicBool::new(false),
        }
    }

    /// Whether this process holds the lease now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Takes or renews the lease; returns whether this process leads.
    pub async fn campaign(&self) -> bool {
        let ttl = Duration::from_secs(self.settings.lifecycle.lease_ttl_sec.max(3));
        let leader = match self.store.acquire_lease(LEASE, &self.instance_id, ttl).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the lifecycle lease");
                false
            }
        };
        if leader != self.leader.swap(leader, Ordering::Relaxed) {
            tracing::info!(instance = %self.instance_id, leader, "lifecycle leadership changed");
        }
        self.metrics.set_leader(leader);
        leader
    }

    /// One pass of everything but the pools (only when leading).
    pub async fn pass(&self) {
        let report = self.sessions.reconcile().await;
        match report {
            Ok(r) if r != Default::default() => tracing::info!(?r, "reconciled sessions with the runtime"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciliation failed"),
        }
        match self.executions.recover(Recovery::Overdue).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(executions = n, "finished overdue executions"),
            Err(e) => tracing::warn!(error = %e, "collecting overdue executions failed"),
        }
        match self.sessions.expire().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "expired sessions terminated"),
            Err(e) => tracing::warn!(error = %e, "ending expired sessions failed"),
        }
        match self.sessions.purge().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "old session records removed"),
            Err(e) => tracing::warn!(error = %e, "purging old sessions failed"),
        }
        let expired = chrono::Utc::now() - crate::service::idempotency::KEY_TTL;
        match self.store.purge_idempotency_keys(expired).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "expired idempotency keys removed"),
            Err(e) => tracing::warn!(error = %e, "purging idempotency keys failed"),
        }
    }

    async fn refill_pools(&self) {
        match self.pools.refill().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(started = n, "pool sandboxes started"),
            Err(e) => tracing::warn!(error = %e, "refilling pools failed"),
        }
        if let Ok(status) = self.pools.status().await {
            for p in status {
                self.metrics.pool_size(&p.template_id, p.ready);
            }
        }
    }

    /// Runs the lease, lifecycle and pool loops until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let ttl = self.settings.lifecycle.lease_ttl_sec.max(3);
        let lease = {
            let this = self.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(ttl) / 3);
                loop {
                    tick.tick().await;
                    this.campaign().await;
                }
            }
        };
        let passes = {
            let this = self.clone();
            async move {
                let every = Duration::from_secs(this.settings.lifecycle.reconcile_interval_sec.max(1));
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if this.is_leader() {
                        this.pass().await;
                    }
                }
            }
        };
        let pools = {
            let this = self.clone();
            async move {
                loop {
                    // A claim here refills at once, leading or not: the store's pool places keep
                    // replicas from over-filling a pool. Otherwise the leader looks now and then.
                    let claimed = tokio::time::timeout(POOL_INTERVAL, this.pools.claimed.notified()).await;
                    if claimed.is_ok() || this.is_leader() {
                        this.refill_pools().await;
                    }
                }
            }
        };
        tokio::join!(lease, passes, pools);
    }

    /// Gives up the lease (shutdown), so another replica takes over at once.
    pub async fn resign(&self) {
        if self.leader.swap(false, Ordering::Relaxed) {
            let _ = self.store.release_lease(LEASE, &self.instance_id).await;
        }
    }
}
