//! Session start, warm and cold, to `running` and to the first `print(1)`, against bare Docker.

use crate::docker::{api_create_start_wait, ms_since, run_pass};
use crate::report::{Metric, Target};
use crate::server::Api;
use anyhow::{Result, ensure};
use bollard::Docker;
use std::time::{Duration, Instant};

/// How long a pool may take to refill before a sample.
const POOL_FILL_LIMIT: Duration = Duration::from_secs(120);

/// Times from `POST /sessions` to the answer, and to the first `print(1)` finished.
#[derive(Debug, Default)]
pub struct Starts {
    /// To `running`, ms.
    pub create: Vec<f64>,
    /// To the first execution finished, ms.
    pub first_exec: Vec<f64>,
}

impl Starts {
    async fn sample(&mut self, api: &Api, keep: bool) -> Result<String> {
        let t = Instant::now();
        let id = api.create_session().await?;
        let created = ms_since(t);
        api.print_1(&id).await?;
        let done = ms_since(t);
        if keep {
            self.create.push(created);
            self.first_exec.push(done);
        }
        Ok(id)
    }
}

/// Warm starts: before each sample the pool is full and idle; each sample must be a pool hit.
pub async fn warm(api: &Api, samples: usize, warmup: usize) -> Result<Starts> {
    let mut starts = Starts::default();
    for i in 0..warmup + samples {
        let before = api.wait_pool_full(POOL_FILL_LIMIT).await?;
        let id = starts.sample(api, i >= warmup).await?;
        let after = api.pool().await?;
        ensure!(
            after.hits == before.hits + 1,
            "warm start {i}: session {id} did not come from the pool (hits {} -> {})",
            before.hits,
            after.hits
        );
        api.delete_session(&id).await?;
    }
    Ok(starts)
}

/// The bare-Docker start baselines.
#[derive(Debug, Default)]
pub struct DockerStarts {
    /// `docker run --rm`, ms.
    pub run: Vec<f64>,
    /// API create + start + wait, ms.
    pub api: Vec<f64>,
}

/// Cold starts (when `api` is given; its pool must be off) alternating with the baselines.
pub async fn cold_and_baselines(
    api: Option<&Api>,
    docker: &Docker,
    image: &str,
    run_id: &str,
    samples: usize,
    warmup: usize,
) -> Result<(Starts, DockerStarts)> {
    if let Some(api) = api {
        let pool = api.pool().await?;
        ensure!(pool.target == 0, "cold starts need the pool off, but its target is {}", pool.target);
    }
    let (mut cold, mut base) = (Starts::default(), DockerStarts::default());
    for i in 0..warmup + samples {
        let keep = i >= warmup;
        if let Some(api) = api {
            let id = cold.sample(api, keep).await?;
            api.delete_session(&id).await?;
        }
        let run = run_pass(image, run_id).await?;
        let via_api = api_create_start_wait(docker, image, run_id).await?;
        if keep {
            base.run.push(run);
            base.api.push(via_api);
        }
    }
    Ok((cold, base))
}

/// The section's metrics. `warm` / `cold` are `Err(reason)` when skipped.
pub fn metrics(
    warm: std::result::Result<&Starts, &str>,
    cold: std::result::Result<&Starts, &str>,
    base: &DockerStarts,
) -> Result<Vec<Metric>> {
    let run = Metric::measured("baseline.docker_run", "ms", &base.run)?
        .note("docker run --rm --network none --entrypoint python3 IMAGE -c pass");
    let api = Metric::measured("baseline.docker_api", "ms", &base.api)?
        .note("Docker API create + start + wait, python3 -c pass");
    let mut out = Vec::new();
    match warm {
        Ok(w) => {
            out.push(
                Metric::measured("start.warm.create", "ms", &w.create)?
                    .vs(&run)
                    .target(Target::P50AtMost(50.0)),
            );
            out.push(
                Metric::measured("start.warm.first_exec", "ms", &w.first_exec)?
                    .vs(&run)
                    .target(Target::P50AtMost(15.0)),
            );
        }
        Err(why) => {
            out.push(Metric::skipped("start.warm.create", "ms", why));
            out.push(Metric::skipped("start.warm.first_exec", "ms", why));
        }
    }
    match cold {
        Ok(c) => {
            let create = Metric::measured("start.cold.create", "ms", &c.create)?;
            let first = Metric::measured("start.cold.first_exec", "ms", &c.first_exec)?;
            let vs_api = first.renamed_vs("start.cold.first_exec.vs_docker_api", &api);
            out.push(create.vs(&run).target(Target::RatioAtMost(1.5)));
            out.push(first.vs(&run).target(Target::RatioAtMost(1.5)));
            out.push(vs_api);
        }
        Err(why) => {
            for name in ["start.cold.create", "start.cold.first_exec", "start.cold.first_exec.vs_docker_api"]
            {
                out.push(Metric::skipped(name, "ms", why));
            }
        }
    }
    out.push(run);
    out.push(api);
    Ok(out)
}
