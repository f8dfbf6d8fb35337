//! Execution round trips via REST against `docker exec` and bare bwrap, alternating: a stateless
//! `print(1)` and `1+1` in a code context.

use crate::docker::{container_of, exec_print_1, ms_since, running};
use crate::host::bwrap_print_1;
use crate::report::{Metric, Target};
use crate::server::Api;
use anyhow::Result;
use bollard::Docker;
use std::time::Instant;

/// Runs the section in a new session, deleted at the end.
pub async fn run(api: &Api, docker: &Docker, samples: usize, warmup: usize) -> Result<Vec<Metric>> {
    let session = api.create_session().await?;
    let container = container_of(&session);
    running(docker, &container).await?;
    let context = api.create_context(&session).await?;
    let (mut rest, mut inside, mut docker_exec, mut bwrap) = (vec![], vec![], vec![], vec![]);
    let mut in_context = vec![];
    for i in 0..warmup + samples {
        let t = Instant::now();
        let e = api.print_1(&session).await?;
        let rest_ms = ms_since(t);
        let t = Instant::now();
        api.one_plus_one(&session, &context).await?;
        let context_ms = ms_since(t);
        let d = exec_print_1(&container).await?;
        let b = bwrap_print_1().await?;
        if i >= warmup {
            rest.push(rest_ms);
            in_context.push(context_ms);
            inside.push(e.executor_ms);
            docker_exec.push(d);
            bwrap.push(b);
        }
    }
    api.delete_session(&session).await?;

    let bwrap = Metric::measured("baseline.bwrap_host", "ms", &bwrap)?
        .note("bare bwrap on the host as nobody, python3 -c 'print(1)'");
    let docker_exec = Metric::measured("baseline.docker_exec", "ms", &docker_exec)?
        .note("docker exec <the session's container> python3 -c 'print(1)'");
    let rest = Metric::measured("exec.rest", "ms", &rest)?
        .note("stateless print(1) through execute-sync: a fresh sandboxed interpreter, started ahead");
    let in_context = Metric::measured("exec.context.rest", "ms", &in_context)?
        .vs(&bwrap)
        .target(Target::RatioAtMost(0.15))
        .note("1+1 in a Python code context through execute-sync");
    let vs_docker = rest.renamed_vs("exec.rest.vs_docker_exec", &docker_exec);
    let inside = Metric::measured("exec.executor_reported", "ms", &inside)?
        .vs(&bwrap)
        .note("the execution's metrics.duration_ms, as the executor measured it");
    Ok(vec![
        rest.vs(&bwrap).target(Target::RatioAtMost(0.25)),
        in_context,
        vs_docker,
        inside,
        bwrap,
        docker_exec,
    ])
}
