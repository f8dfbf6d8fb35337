//! Throughput at rising concurrency (one session per worker) against bare bwrap on the host.

use crate::docker::ms_since;
use crate::host::bwrap_print_1;
use crate::report::{Metric, Target};
use crate::server::Api;
use crate::stats::{Summary, window_rates};
use anyhow::Result;
use std::future::Future;
use std::time::{Duration, Instant};

/// Rates are counted in windows of this many seconds.
pub const WINDOW_SECS: f64 = 1.0;

/// What one level produced.
pub struct Level {
    /// Each execution's latency, ms.
    latencies: Vec<f64>,
    /// Executions per second in each whole window.
    rates: Vec<f64>,
    /// Executions finished, and the seconds until the last one did.
    total: usize,
    elapsed: f64,
}

/// Runs `op(worker)` in `workers` concurrent loops that start new calls for `secs` seconds.
pub async fn drive<F, Fut>(workers: usize, secs: f64, op: F) -> Result<Level>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let loops = (0..workers).map(|w| {
        let op = &op;
        async move {
            let mut done = Vec::new();
            while start.elapsed() < limit {
                let t = Instant::now();
                op(w).await?;
                done.push((start.elapsed().as_secs_f64(), ms_since(t)));
            }
            anyhow::Ok(done)
        }
    });
    let all: Vec<(f64, f64)> =
        futures_util::future::try_join_all(loops).await?.into_iter().flatten().collect();
    let completions: Vec<f64> = all.iter().map(|(at, _)| *at).collect();
    Ok(Level {
        latencies: all.iter().map(|(_, ms)| *ms).collect(),
        rates: window_rates(&completions, secs, WINDOW_SECS),
        total: all.len(),
        elapsed: start.elapsed().as_secs_f64(),
    })
}

/// The rate and latency rows of one level, named `{prefix}.c{c}.rate` and `.latency`.
pub fn level_metrics(prefix: &str, c: usize, l: &Level) -> Result<(Metric, Metric)> {
    let note = format!("{} executions in {:.1} s", l.total, l.elapsed);
    Ok((
        Metric::measured(&format!("{prefix}.c{c}.rate"), "exec/s", &l.rates)?.note(note),
        Metric::measured(&format!("{prefix}.c{c}.latency"), "ms", &l.latencies)?,
    ))
}

/// Runs every level, each for `secs` seconds, and deletes the sessions it made. Escalation stops
/// once a level's latency p99 exceeds twice the first level's; the rest are reported skipped.
pub async fn run(api: &Api, levels: &[usize], secs: f64, warmup: usize) -> Result<Vec<Metric>> {
    let mut sessions: Vec<String> = Vec::new();
    let outcome = run_levels(api, levels, secs, warmup, &mut sessions).await;
    for s in &sessions {
        api.delete_session(s).await?;
    }
    outcome
}

async fn run_levels(
    api: &Api,
    levels: &[usize],
    secs: f64,
    warmup: usize,
    sessions: &mut Vec<String>,
) -> Result<Vec<Metric>> {
    let mut out = Vec::new();
    let mut first: Option<(usize, f64)> = None;
    let mut stopped: Option<String> = None;
    for &c in levels {
        if let Some(why) = &stopped {
            for (name, unit) in [("rate", "exec/s"), ("latency", "ms")] {
                out.push(Metric::skipped(&format!("throughput.c{c}.{name}"), unit, why.clone()));
            }
            continue;
        }
        while sessions.len() < c {
            sessions.push(api.create_session().await?);
        }
        let active = &sessions[..c];
        for _ in 0..warmup {
            futures_util::future::try_join_all(active.iter().map(|s| api.print_1(s))).await?;
            futures_util::future::try_join_all((0..c).map(|_| bwrap_print_1())).await?;
        }
        let rest = drive(c, secs, |w| {
            let s = &active[w];
            async move { api.print_1(s).await.map(drop) }
        })
        .await?;
        let bare = drive(c, secs, |_| async { bwrap_print_1().await.map(drop) }).await?;
        let (base_rate, base_lat) = level_metrics("baseline.bwrap_host", c, &bare)?;
        let (rate, lat) = level_metrics("throughput", c, &rest)?;
        let p99 = Summary::of(&rest.latencies).map(|s| s.p99);
        // At four clients the REST path keeps at least the share of bare bwrap's rate it had
        // before interpreters were started ahead (0.64x).
        let rate = match c {
            4 => rate.vs(&base_rate).target(Target::RatioAtLeast(0.64)),
            _ => rate.vs(&base_rate),
        };
        out.extend([rate, lat.vs(&base_lat), base_rate, base_lat]);
        match (first, p99) {
            (None, Some(p)) => first = Some((c, p)),
            (Some((c0, p0)), Some(p)) if p > 2.0 * p0 => {
                stopped =
                    Some(format!("p99 at c={c} was {p:.0} ms, more than twice the {p0:.0} ms at c={c0}"));
            }
            _ => {}
        }
    }
    Ok(out)
}
