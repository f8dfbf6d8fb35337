//! Admission: whether a new session, or a package install, fits the caller's quota and what the
//! host has left. CPU, memory and workspace disk are counted per API key and per host, and a
//! package installer counts like a session while it runs (its memory and its staging space), so
//! one tenant cannot exhaust what the others share. Quota refusals are 429 `quota_exceeded`, a
//! full host 503 `capacity_exhausted`, both with `Retry-After`; a shape no host here could ever
//! hold is 422.

use crate::caller::Caller;
use crate::service::dependencies::package_sets;
use crate::service::error::ServiceError;
use crate::service::sandboxes::Shape;
use crate::settings::{RuntimeKind, Settings};
use sandbox_core::MemoryQuantity;
use sandbox_core::model::{InstallStatus, Session, SessionStatus};
use sandbox_runtime::{HostCapacity, Runtime};
use sandbox_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the host's capacity, as the runtime reports it, is trusted.
const CAPACITY_TTL: Duration = Duration::from_secs(60);

/// What the live sessions (and their running installs) hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Committed {
    sessions: u64,
    memory: u64,
    disk: u64,
}

impl std::ops::Add for Committed {
    type Output = Committed;

    fn add(self, o: Committed) -> Committed {
        Committed {
            sessions: self.sessions + o.sessions,
            memory: self.memory + o.memory,
            disk: self.disk + o.disk,
        }
    }
}

/// Sessions admitted whose rows are not written yet, by ticket: counted like live ones, so
/// creates arriving together cannot pass a limit together.
#[derive(Default)]
struct Pending {
    next: u64,
    held: HashMap<u64, (String, Committed)>,
}

/// A session admitted whose row is not written yet; drop it once the row is (or the create
/// failed).
pub struct Admitted {
    pending: Arc<Mutex<Pending>>,
    ticket: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).held.remove(&self.ticket);
    }
}

/// Decides whether sessions and installs may start.
pub struct Admission {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    host: tokio::sync::Mutex<Option<(Instant, Option<HostCapacity>)>>,
    /// One admission decision at a time in this process: each sees the ones before it.
    gate: tokio::sync::Mutex<()>,
    pending: Arc<Mutex<Pending>>,
}

fn shown(bytes: u64) -> String {
    MemoryQuantity::from_bytes(bytes).map(|m| m.to_string()).unwrap_or_else(|_| format!("{bytes} bytes"))
}

impl Admission {
    /// The service.
    pub fn new(settings: Arc<Settings>, store: Arc<dyn Store>, runtime: Arc<dyn Runtime>) -> Self {
        Admission {
            settings,
            store,
            runtime,
            host: tokio::sync::Mutex::new(None),
            gate: tokio::sync::Mutex::new(()),
            pending: Arc::default(),
        }
    }

    /// What admitted sessions not recorded yet hold: `owner`'s, and everyone's (one read, so the
    /// two agree).
    fn pending(&self, owner: &str) -> (Committed, Committed) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.held.values().fold(Default::default(), |(mine, all), (o, c)| {
            (if o == owner { mine + *c } else { mine }, all + *c)
        })
    }

    /// What one running install holds: the installer's memory, and its staging filesystems.
    fn install_cost(&self) -> (u64, u64) {
        let d = &self.settings.dependencies;
        (d.memory.bytes(), package_sets::staging_bytes(d.max_size_mb))
    }

    fn commitments<'a>(&self, sessions: impl IntoIterator<Item = &'a Session>) -> Committed {
        let (install_memory, install_disk) = self.install_cost();
        sessions.into_iter().fold(Committed::default(), |c, s| {
            let installing = s.dependency_install_status == InstallStatus::Installing;
            Committed {
                sessions: c.sessions + 1,
                memory: c.memory + s.memory.bytes() + if installing { install_memory } else { 0 },
                disk: c.disk + s.disk.bytes() + if installing { install_disk } else { 0 },
            }
        })
    }

    async fn host_capacity(&self) -> Option<HostCapacity> {
        let mut cached = self.host.lock().await;
        if let Some((at, cap)) = *cached
            && at.elapsed() < CAPACITY_TTL
        {
            return cap;
        }
        let cap = self.runtime.host_capacity().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the host's capacity");
            None
        });
        *cached = Some((Instant::now(), cap));
        cap
    }

    /// Bytes of the filesystem holding the data directory (where workspaces live), when this
    /// host's disk is the one sessions use (Docker).
    fn data_filesystem_bytes(&self) -> Option<u64> {
        if self.settings.runtime != RuntimeKind::Docker {
            return None;
        }
        match rustix::fs::statvfs(&self.settings.data_dir) {
            Ok(st) => Some(st.f_blocks.saturating_mul(st.f_frsize)),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the size of the data filesystem");
                None
            }
        }
    }

    /// Refuses a session of `shape` (with a package install when `installing`) that `owner`'s
    /// quota or the host cannot take; an admitted one counts until the [`Admitted`] is dropped,
    /// which the caller does once the session's row is written.
    pub async fn admit_session(
        &self,
        owner: &Caller,
        shape: &Shape,
        installing: bool,
    ) -> Result<Admitted, ServiceError> {
        let _gate = self.gate.lock().await;
        let cap = &self.settings.capacity;
        // The admitted-but-unrecorded ones first, then the rows: one whose row lands between the
        // two reads is counted twice (safe); read the other way round, it could be missed.
        let (my_pending, all_pending) = self.pending(&owner.key_id);
        let live = self.store.sessions_in_status(&[SessionStatus::Creating, SessionStatus::Running]).await?;
        let mine = self.commitments(live.iter().filter(|s| s.owner_key_id == owner.key_id)) + my_pending;
        let quota = |message: String| ServiceError::quota("quota_exceeded", message, 30);
        if cap.max_sessions_per_key > 0 && mine.sessions >= cap.max_sessions_per_key {
            return Err(quota(format!(
                "this API key has {} live sessions, its limit; end one and retry",
                mine.sessions
            )));
        }
        if let Some(key_disk) = cap.max_disk_per_key
            && mine.disk + shape.disk.bytes() > key_disk.bytes()
        {
            return Err(quota(format!(
                "this API key's live sessions hold {} of disk; {} more would pass its limit of {}",
                shown(mine.disk),
                shape.disk,
                key_disk
            )));
        }
        let host = self.host_capacity().await;
        if let Some(h) = host {
            if shape.memory.bytes() > h.memory_bytes {
                return Err(ServiceError::invalid_field(
                    "memory",
                    format!("larger than the host's {} of memory", shown(h.memory_bytes)),
                ));
            }
            if shape.cpu.cores() > f64::from(h.cpus) {
                return Err(ServiceError::invalid_field(
                    "cpu",
                    format!("more than the host's {} CPUs", h.cpus),
                ));
            }
        }
        if cap.max_sessions > 0 && live.len() as u64 + all_pending.sessions >= cap.max_sessions {
            return Err(full(format!("the server runs its maximum of {} sessions", cap.max_sessions)));
        }
        let (install_memory, install_disk) = if installing { self.install_cost() } else { (0, 0) };
        let (memory, disk) = (shape.memory.bytes() + install_memory, shape.disk.bytes() + install_disk);
        self.fits(&live, all_pending, memory, disk, host)?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.next += 1;
        let ticket = pending.next;
        pending.held.insert(ticket, (owner.key_id.clone(), Committed { sessions: 1, memory, disk }));
        Ok(Admitted { pending: self.pending.clone(), ticket })
    }

    /// Refuses a package install into a running session when the host has no room for its
    /// installer (memory) and staging space (disk).
    pub async fn admit_install(&self) -> Result<(), ServiceError> {
        let (memory, disk) = self.install_cost();
        let (_, pending) = self.pending("");
        let live = self.store.sessions_in_status(&[SessionStatus::Creating, SessionStatus::Running]).await?;
        let host = self.host_capacity().await;
        self.fits(&live, pending, memory, disk, host)
    }

    /// Whether `memory` and `disk` more fit beside what `live` holds.
    fn fits(
        &self,
        live: &[Session],
        pending: Committed,
        memory: u64,
        disk: u64,
        host: Option<HostCapacity>,
    ) -> Result<(), ServiceError> {
        let cap = &self.settings.capacity;
        let all = self.commitments(live) + pending;
        if let Some(h) = host {
            let allowed = (h.memory_bytes as f64 * cap.memory_overcommit) as u64;
            if all.memory + memory > allowed {
                return Err(full(format!(
                    "the host's memory is committed to {} live sessions and their installs; retry when some end",
                    all.sessions
                )));
            }
        }
        if let Some(size) = self.data_filesystem_bytes() {
            let allowed = (size as f64 * cap.disk_overcommit) as u64;
            if all.disk + disk > allowed {
                return Err(full(format!(
                    "the host's disk is committed to {} live sessions and their installs ({} of {} allowed); retry when some end",
                    all.sessions,
                    shown(all.disk),
                    shown(allowed)
                )));
            }
        }
        Ok(())
    }
}

/// 503 `capacity_exhausted`, retry in 30 s.
fn full(why: String) -> ServiceError {
    ServiceError::unavailable("capacity_exhausted", why, 30)
}
