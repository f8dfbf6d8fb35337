//! Density: idle sessions up to a ceiling, the memory they hold, then all of them deleted.

use crate::docker::{container_of, ms_since, running};
use crate::host::{cgroup_pids, container_cgroup, rss_mib, status_field, used_memory_mib};
use crate::report::{Metric, Target};
use crate::server::{Api, TEMPLATE};
use anyhow::{Context, Result, ensure};
use bollard::Docker;
use serde_json::json;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Idle timeout asked for, seconds: longer than any run, so no session ends while others are
/// still being created.
const IDLE_TIMEOUT_SECS: u64 = 3600;

/// Bounds of a density run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Sessions wanted.
    pub ceiling: usize,
    /// Creation stops after this long.
    pub time_limit: Duration,
    /// Creates in flight at once.
    pub concurrency: usize,
    /// Wait after the last create before measuring, so every executor is idle.
    pub settle: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates sessions until a bound; returns the create latencies and what stopped it.
async fn fill(api: &Api, cfg: &Config, ids: &Mutex<Vec<String>>) -> Result<(Vec<f64>, String)> {
    let next = AtomicUsize::new(0);
    let stop: Mutex<Option<String>> = Mutex::new(None);
    let start = Instant::now();
    let (next, stop) = (&next, &stop);
    let workers = (0..cfg.concurrency.max(1)).map(|_| async move {
        let mut latencies = Vec::new();
        loop {
            if lock(stop).is_some() {
                break;
            }
            if start.elapsed() >= cfg.time_limit {
                lock(stop).get_or_insert(format!("time limit of {} s", cfg.time_limit.as_secs()));
                break;
            }
            if next.fetch_add(1, Ordering::SeqCst) >= cfg.ceiling {
                break;
            }
            let t = Instant::now();
            let body = json!({"template_id": TEMPLATE, "timeout": IDLE_TIMEOUT_SECS});
            match api.try_create_session(body).await? {
                Ok(id) => {
                    latencies.push(ms_since(t));
                    lock(ids).push(id);
                }
                Err(r) => {
                    lock(stop).get_or_insert(format!("refused by the server: {} ({})", r.code, r.message));
                    break;
                }
            }
        }
        anyhow::Ok(latencies)
    });
    let latencies = futures_util::future::join_all(workers).await.into_iter().collect::<Result<Vec<_>>>()?;
    let reason = lock(stop).take().unwrap_or_else(|| format!("reached the ceiling of {}", cfg.ceiling));
    Ok((latencies.concat(), reason))
}

/// Deletes `ids`, `concurrency` at a time; the delete latencies.
async fn delete_all(api: &Api, ids: Vec<String>, concurrency: usize) -> Result<Vec<f64>> {
    let queue = Mutex::new(ids);
    let queue = &queue;
    let workers = (0..concurrency.max(1)).map(|_| async move {
        let mut latencies = Vec::new();
        loop {
            let Some(id) = lock(queue).pop() else { break };
            let t = Instant::now();
            api.delete_session(&id).await?;
            latencies.push(ms_since(t));
        }
        anyhow::Ok(latencies)
    });
    let all = futures_util::future::join_all(workers).await.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(all.concat())
}

/// What one idle sandbox holds, MiB.
struct SandboxMemory {
    executor_rss: f64,
    shim_rss: f64,
    cgroup: f64,
    other_processes: usize,
}

fn cgroup_usage_mib(cgroup: &Path) -> Result<f64> {
    let file = ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .map(|f| cgroup.join(f))
        .find(|p| p.exists())
        .with_context(|| format!("no memory usage file in {}", cgroup.display()))?;
    let bytes: f64 = std::fs::read_to_string(&file)?.trim().parse().context("memory usage")?;
    Ok(bytes / (1024.0 * 1024.0))
}

async fn measure(docker: &Docker, session: &str) -> Result<SandboxMemory> {
    let name = container_of(session);
    let (id, pid) = running(docker, &name).await?;
    let comm = status_field(pid, "Name")?;
    ensure!(comm.starts_with("sandbox-exec"), "{name}: its first process is {comm:?}, not the executor");
    let cgroup = container_cgroup(&id)?;
    let pids = cgroup_pids(&cgroup)?;
    ensure!(pids.contains(&pid), "{name}: the executor ({pid}) is not in {}", cgroup.display());
    let shim: u32 = status_field(pid, "PPid")?.parse().context("PPid")?;
    let shim_comm = status_field(shim, "Name")?;
    ensure!(shim_comm.starts_with("containerd-shim"), "{name}: the executor's parent is {shim_comm:?}");
    Ok(SandboxMemory {
        executor_rss: rss_mib(pid)?,
        shim_rss: rss_mib(shim)?,
        cgroup: cgroup_usage_mib(&cgroup)?,
        other_processes: pids.len() - 1,
    })
}

/// Runs the section. `server_pid` is the control plane's process, when known.
pub async fn run(api: &Api, docker: &Docker, server_pid: Option<u32>, cfg: &Config) -> Result<Vec<Metric>> {
    let running_before = api.running_sessions().await?;
    let rss_before = server_pid.map(rss_mib).transpose()?;
    let used_before = used_memory_mib()?;
    let ids = Mutex::new(Vec::new());
    let measured = async {
        let (create, bound) = fill(api, cfg, &ids).await?;
        tokio::time::sleep(cfg.settle).await;
        let ids_now = lock(&ids).clone();
        let n = ids_now.len();
        ensure!(n > 0, "density: no session could be created ({bound})");
        let listed = api.running_sessions().await?;
        ensure!(
            listed >= running_before + n as u64,
            "density: created {n} sessions but the server lists {listed} running ({running_before} before)"
        );
        let rss_after = server_pid.map(rss_mib).transpose()?;
        let used_after = used_memory_mib()?;
        let mut sandboxes = Vec::with_capacity(n);
        for id in &ids_now {
            sandboxes.push(measure(docker, id).await?);
        }
        Ok::<_, anyhow::Error>((create, bound, rss_after, used_after, sandboxes))
    }
    .await;
    let created = std::mem::take(&mut *lock(&ids));
    let deleted = delete_all(api, created, cfg.concurrency).await;
    let (create, bound, rss_after, used_after, sandboxes) = measured?;
    let delete = deleted?;
    let n = sandboxes.len();

    let per_session = |before: f64, after: f64| (after - before) / n as f64;
    let others: usize = sandboxes.iter().map(|s| s.other_processes).sum();
    let pick = |f: fn(&SandboxMemory) -> f64| sandboxes.iter().map(f).collect::<Vec<f64>>();
    let mut out = vec![
        Metric::measured("density.sessions", "sessions", &[n as f64])?
            .target(Target::AtLeast(cfg.ceiling as f64))
            .note(format!("{bound}; DESIGN: 500 idle sessions on 2 cores / 24 GiB")),
        Metric::measured("density.create", "ms", &create)?
            .note(format!("{} creates at a time", cfg.concurrency)),
        Metric::measured("density.executor_rss", "MiB", &pick(|s| s.executor_rss))?
            .target(Target::P99AtMost(10.0))
            .note(format!("VmRSS of each idle executor; {others} other processes in all containers")),
        Metric::measured("density.shim_rss", "MiB", &pick(|s| s.shim_rss))?
            .note("VmRSS of each container's containerd-shim"),
        Metric::measured("density.container_cgroup", "MiB", &pick(|s| s.cgroup))?
            .note("memory cgroup usage of each container, page cache included"),
    ];
    out.push(match (rss_before, rss_after) {
        (Some(b), Some(a)) => {
            Metric::measured("density.server_rss_per_session", "MiB", &[per_session(b, a)])?
                .note(format!("control-plane VmRSS {b:.1} -> {a:.1} MiB over {n} sessions"))
        }
        _ => Metric::skipped(
            "density.server_rss_per_session",
            "MiB",
            "the server's pid is unknown (--server-pid)",
        ),
    });
    out.push(
        Metric::measured("density.host_memory_per_session", "MiB", &[per_session(used_before, used_after)])?
            .note(format!("MemTotal - MemAvailable {used_before:.0} -> {used_after:.0} MiB; other work on the host counts too")),
    );
    out.push(Metric::measured("density.delete", "ms", &delete)?);
    Ok(out)
}
