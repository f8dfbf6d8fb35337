//! Warm pools: per template, sandboxes started ahead of demand so that creating a session only
//! claims one. A pool sandbox is made for a reserved session id, so the session that claims it
//! finds its workspace and socket directories where they always are. Claims are atomic in the
//! store (any replica may claim), and so are a pool's places: the replica that claimed refills at
//! once and the lifecycle leader now and then, and together they never over-fill a pool.

use crate::metrics::Metrics;
use crate::service::error::ServiceError;
use crate::service::sandboxes::{Sandboxes, Shape};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use sandbox_core::model::{PoolSandbox, PoolState, Template, TemplateStatus};
use sandbox_core::{CpuQuantity, Language, MemoryQuantity};
use sandbox_runtime::Runtime;
use sandbox_store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Time-to-ready samples kept per template for the status endpoint.
const SAMPLES: usize = 200;

#[derive(Default)]
struct Stats {
    hits: u64,
    misses: u64,
    ready_ms: VecDeque<f64>,
}

/// One pool as the status endpoint shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PoolStatus {
    /// The template.
    pub template_id: String,
    /// Ready sandboxes wanted.
    pub target_size: u32,
    /// Ready now.
    pub ready: u64,
    /// Being started now.
    pub starting: u64,
    /// Sessions that got a pool sandbox (since this replica started).
    pub hits: u64,
    /// Sessions that had to wait for a new sandbox.
    pub misses: u64,
    /// `hits / (hits + misses)`, or null before any claim.
    pub hit_rate: Option<f64>,
    /// Time for a pool sandbox to become ready, over the last samples.
    pub time_to_ready_ms: Percentiles,
}

/// Percentiles of a sample.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Percentiles {
    fn of(samples: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = samples.into_iter().collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied();
        Percentiles { count: v.len(), p50: at(0.5), p90: at(0.9), p99: at(0.99) }
    }
}

/// The warm pools.
pub struct Pools {
    settings: Arc<Settings>,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    sandboxes: Arc<Sandboxes>,
    metrics: Arc<Metrics>,
    stats: Mutex<HashMap<String, Stats>>,
    /// Woken after a claim, so this replica refills at once.
    pub claimed: tokio::sync::Notify,
}

/// What a claim hands to the new session.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The session id the sandbox was made for.
    pub session_id: String,
    /// The runtime's id of the sandbox.
    pub container_id: String,
    /// The sandbox's name.
    pub sandbox_name: String,
}

/// The shape a template's pool sandboxes have.
pub fn default_shape(t: &Template) -> Option<Shape> {
    Some(Shape {
        template_id: t.id.clone(),
        image: t.image_url.clone(),
        cpu: CpuQuantity::from_millis((t.default_cpu_cores * 1000.0).round() as u32).ok()?,
        memory: MemoryQuantity::from_mib(u64::from(t.default_memory_mb)).ok()?,
        disk: MemoryQuantity::from_mib(u64::from(t.default_disk_mb)).ok()?,
        // A claimed sandbox's first execution finds its interpreter started.
        prestart: Language::of_runtime(&t.language_runtime),
    })
}

impl Pools {
    /// The service.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        sandboxes: Arc<Sandboxes>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Pools {
            settings,
            store,
            runtime,
            sandboxes,
            metrics,
            stats: Mutex::new(HashMap::new()),
            claimed: tokio::sync::Notify::new(),
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stats>> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a ready sandbox for a session of `template` with `wanted` resources, adjusting its
    /// CPU and memory when they differ from the pool's. `None` (a miss) when the pool is empty,
    /// disabled, or the shape cannot be met by a pool sandbox.
    pub async fn claim(&self, template: &Template, wanted: &Shape) -> Option<Claimed> {
        let pool_shape = default_shape(template)?;
        if self.settings.pools.size_of(&template.id) == 0 {
            return None;
        }
        let claimed = if wanted.disk != pool_shape.disk || wanted.image != pool_shape.image {
            None
        } else {
            self.store.claim_pool_sandbox(&template.id, Utc::now()).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "pool claim failed; starting a sandbox instead");
                None
            })
        };
        let hit = claimed
            .as_ref()
            .and_then(|p| Some((p.id.clone(), p.container_id.clone()?, p.sandbox_name.clone()?)));
        self.record(&template.id, hit.is_some());
        self.claimed.notify_one();
        let (session_id, container_id, sandbox_name) = hit?;
        if (wanted.cpu, wanted.memory) != (pool_shape.cpu, pool_shape.memory) {
            let updated = self.runtime.update_resources(&container_id, wanted.cpu, wanted.memory).await;
            if !matches!(updated, Ok(true)) {
                tracing::warn!(session_id, ?updated, "could not resize a pool sandbox; discarding it");
                self.discard(&session_id, Some(&container_id)).await;
                return None;
            }
        }
        Some(Claimed { session_id, container_id, sandbox_name })
    }

    fn record(&self, template: &str, hit: bool) {
        let mut stats = self.stats();
        let s = stats.entry(template.to_owned()).or_default();
        if hit {
            s.hits += 1
        } else {
            s.misses += 1
        }
        self.metrics.pool_claim(template, hit);
    }

    /// The session made from a claim exists: the pool forgets the sandbox.
    pub async fn handed_over(&self, session_id: &str) {
        if let Err(e) = self.store.delete_pool_sandbox(session_id).await {
            tracing::warn!(session_id, error = %e, "could not forget a claimed pool sandbox");
        }
    }

    /// Removes a pool sandbox: its container, files and record.
    pub async fn discard(&self, id: &str, container: Option<&str>) {
        if let Some(c) = container
            && let Err(e) = self.runtime.remove(c).await
        {
            tracing::warn!(id, error = %e, "could not remove a pool sandbox");
            return;
        }
        if let Err(e) = self.sandboxes.release_files(id).await {
            tracing::warn!(id, error = %e, "could not remove a pool sandbox's files");
        }
        let _ = self.store.delete_pool_sandbox(id).await;
    }

    /// Removes pool sandboxes that died (not among the `running` containers), never got ready
    /// within `deadline`, or were claimed by a session that never appeared (its control plane
    /// stopped between the claim and the record). Returns how many.
    pub async fn collect(
        &self,
        running: &HashSet<&str>,
        now: DateTime<Utc>,
        deadline: chrono::Duration,
    ) -> Result<u64, ServiceError> {
        let mut discarded = 0;
        for p in self.store.list_pool_sandboxes().await? {
            let dead = match p.state {
                PoolState::Starting => now - p.created_at > deadline,
                PoolState::Ready => !p.container_id.as_deref().is_some_and(|c| running.contains(c)),
                PoolState::Claimed => {
                    p.claimed_at.is_some_and(|t| now - t > chrono::Duration::seconds(60))
                        && self.store.session(&p.id).await?.is_none()
                }
            };
            if dead {
                self.discard(&p.id, p.container_id.as_deref()).await;
                discarded += 1;
            }
        }
        Ok(discarded)
    }

    /// Starts sandboxes until every active template's pool has its target size (at most
    /// `pools.max_starting` at once), as far as the pool has free places in the store (another
    /// replica may be refilling it too). Returns how many were started.
    pub async fn refill(&self) -> Result<usize, sandbox_store::StoreError> {
        let existing = self.store.list_pool_sandboxes().await?;
        let mut wanted: Vec<(Template, Shape)> = Vec::new();
        for template in self.store.list_templates(1000, 0).await?.items {
            let target = self.settings.pools.size_of(&template.id) as usize;
            let usable = template.is_active && template.status == TemplateStatus::Ready;
            let Some(shape) = default_shape(&template).filter(|_| usable && target > 0) else {
                continue;
            };
            let have = existing
                .iter()
                .filter(|p| p.template_id == template.id && p.state != PoolState::Claimed)
                .count();
            for _ in have..target {
                wanted.push((template.clone(), shape.clone()));
            }
        }
        let mut started = 0;
        for batch in wanted.chunks(self.settings.pools.max_starting.max(1)) {
            let results =
                futures_util::future::join_all(batch.iter().map(|(t, shape)| self.start_one(t, shape))).await;
            started += results.into_iter().filter(|ok| *ok).count();
        }
        Ok(started)
    }

    async fn start_one(&self, template: &Template, shape: &Shape) -> bool {
        let id = crate::ids::session_id();
        let mut entry = PoolSandbox {
            id: id.clone(),
            template_id: template.id.clone(),
            state: PoolState::Starting,
            container_id: None,
            sandbox_name: Some(Sandboxes::sandbox_name(&id)),
            created_at: Utc::now(),
            ready_at: None,
            claimed_at: None,
        };
        let size = self.settings.pools.size_of(&template.id);
        if !matches!(self.store.insert_pool_sandbox(&entry, size).await, Ok(true)) {
            return false;
        }
        let clock = Instant::now();
        match self.sandboxes.start(&id, shape, None).await {
            Ok(sb) => {
                entry.state = PoolState::Ready;
                entry.container_id = Some(sb.id.clone());
                entry.ready_at = Some(Utc::now());
                if !matches!(self.store.update_pool_sandbox(&entry).await, Ok(true)) {
                    self.discard(&id, Some(&sb.id)).await;
                    return false;
                }
                let ms = clock.elapsed().as_secs_f64() * 1000.0;
                let mut stats = self.stats();
                let samples = &mut stats.entry(template.id.clone()).or_default().ready_ms;
                if samples.len() == SAMPLES {
                    samples.pop_front();
                }
                samples.push_back(ms);
                self.metrics.pool_ready(&template.id, clock.elapsed());
                true
            }
            Err(e) => {
                tracing::warn!(template = %template.id, error = %e, "could not start a pool sandbox");
                self.discard(&id, None).await;
                false
            }
        }
    }

    /// Every template's pool.
    pub async fn status(&self) -> Result<Vec<PoolStatus>, sandbox_store::StoreError> {
        let entries = self.store.list_pool_sandboxes().await?;
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for e in &entries {
            let c = counts.entry(e.template_id.clone()).or_default();
            match e.state {
                PoolState::Ready => c.0 += 1,
                PoolState::Starting => c.1 += 1,
                PoolState::Claimed => {}
            }
        }
        let templates = self.store.list_templates(1000, 0).await?.items;
        let stats = self.stats();
        Ok(templates
            .into_iter()
            .map(|t| {
                let (ready, starting) = counts.get(&t.id).copied().unwrap_or_default();
                let s = stats.get(&t.id);
                let (hits, misses) = s.map_or((0, 0), |s| (s.hits, s.misses));
                PoolStatus {
                    target_size: self.settings.pools.size_of(&t.id),
                    ready,
                    starting,
                    hits,
                    misses,
                    hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                    time_to_ready_ms: s
                        .map(|s| Percentiles::of(s.ready_ms.iter().copied()))
                        .unwrap_or_default(),
                    template_id: t.id,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from));
        assert_eq!((p.count, p.p50, p.p90, p.p99), (100, Some(51.0), Some(90.0), Some(99.0)));
        assert_eq!(Percentiles::of([]).p50, None);
    }
}
