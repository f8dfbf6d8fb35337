//! The executor alone, over its Unix socket (no control plane): stateless `print(1)` on a
//! pre-started interpreter and on one started for it, and `1+1` in a code context, next to bare
//! bwrap in alternation; the first `print(1)` of a sandbox that pre-started Python; then
//! executions per second at four concurrent clients (a sandbox each) next to four bare bwraps.

use crate::docker::ms_since;
use crate::host::bwrap_print_1;
use crate::report::Metric;
use crate::throughput::{drive, level_metrics};
use anyhow::{Context, Result, anyhow, ensure};
use sandbox_core::{ExecutionStatus, Language};
use sandbox_e2e::{TestSandbox, exec_request};
use sandbox_protocol::{ContextRequest, ExecResult};
use std::time::{Duration, Instant};

/// A `python-basic` sandbox (the image `images/build.sh` tags, with `$IMAGE_PREFIX`) with these
/// executor settings.
async fn sandbox(settings: &[(&str, &str)]) -> Result<TestSandbox> {
    let env: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    TestSandbox::start_with("python-basic", |s| s.executor_env.extend(env), |_| {})
        .await
        .map_err(|e| anyhow!("starting a sandbox: {e}"))
}

fn printed_1(r: &ExecResult) -> Result<()> {
    ensure!(r.status == ExecutionStatus::Completed && r.stdout == "1\n", "print(1) answered {r:?}");
    Ok(())
}

/// Stateless `print(1)` on `sb`, in ms and as the executor measured it.
async fn print_1(sb: &TestSandbox) -> Result<(f64, f64)> {
    let t = Instant::now();
    let r = sb.executor.execute(&exec_request(Language::Python, "print(1)", 30)).await?;
    let ms = ms_since(t);
    printed_1(&r)?;
    Ok((ms, r.metrics.duration_ms))
}

/// Waits until `sb` has a Python spare that has had time to finish starting, so that each
/// sample measures the hand-off (the throughput rows measure back to back).
async fn spare_ready(sb: &TestSandbox) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sb.executor.spares().await?.iter().any(|s| s.language == Language::Python && s.age_ms >= 100) {
        ensure!(Instant::now() < deadline, "no spare was started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The first `print(1)` of sandboxes whose executor pre-started Python (as the control plane
/// has it do for pooled sandboxes), once the spare is up.
async fn first_executions(starts: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..starts {
        let sb = sandbox(&[("SANDBOX_EXECUTOR_PRESTART", "python")]).await?;
        spare_ready(&sb).await?;
        out.push(print_1(&sb).await?.0);
    }
    Ok(out)
}

/// Runs the section; the sandboxes it starts are removed when it ends.
pub async fn run(
    samples: usize,
    starts: usize,
    warmup: usize,
    secs: f64,
    clients: usize,
) -> Result<Vec<Metric>> {
    let warm = sandbox(&[]).await?;
    let cold = sandbox(&[("SANDBOX_EXECUTOR_SPARE_IDLE_SECS", "0")]).await?;
    let ctx = ContextRequest {
        context_id: "bench".into(),
        language: Language::Python,
        cwd: None,
        env: Default::default(),
    };
    warm.executor.create_context(&ctx).await.context("creating a context")?;
    let (mut spare, mut reported, mut fresh, mut cell, mut bwrap) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..warmup + samples {
        spare_ready(&warm).await?;
        let (s, inside) = print_1(&warm).await?;
        let (f, _) = print_1(&cold).await?;
        let t = Instant::now();
        let r = warm.executor.execute_in("bench", &exec_request(Language::Python, "1+1", 30)).await?;
        let c = ms_since(t);
        let two = r.results.iter().find(|o| o.is_main_result).and_then(|o| o.data.get("text/plain"));
        ensure!(two.and_then(|v| v.as_str()) == Some("2"), "1+1 answered {r:?}");
        let b = bwrap_print_1().await?;
        if i >= warmup {
            spare.push(s);
            reported.push(inside);
            fresh.push(f);
            cell.push(c);
            bwrap.push(b);
        }
    }
    drop((warm, cold));

    let bwrap = Metric::measured("executor.baseline.bwrap_host", "ms", &bwrap)?
        .note("bare bwrap on the host as nobody, python3 -c 'print(1)', alternating with the rows above");
    let spare = Metric::measured("executor.print1.spare", "ms", &spare)?
        .vs(&bwrap)
        .note("stateless print(1) on a pre-started interpreter, through the executor's socket");
    let reported = Metric::measured("executor.print1.spare.reported", "ms", &reported)?
        .vs(&bwrap)
        .note("the same executions' metrics.duration_ms");
    let fresh = Metric::measured("executor.print1.fresh", "ms", &fresh)?
        .vs(&bwrap)
        .note("the same with --spare-idle-secs 0: the interpreter started for the execution");
    let cell = Metric::measured("executor.context.1plus1", "ms", &cell)?
        .vs(&bwrap)
        .note("1+1 as a cell of a context, its value back as the main result");
    let first = Metric::measured("executor.first_exec.prestarted", "ms", &first_executions(starts).await?)?
        .vs(&bwrap)
        .note("the first print(1) of a sandbox started with SANDBOX_EXECUTOR_PRESTART=python");

    let sandboxes = futures_util::future::try_join_all((0..clients).map(|_| sandbox(&[]))).await?;
    futures_util::future::try_join_all(sandboxes.iter().map(print_1)).await?;
    let level = drive(clients, secs, |w| {
        let sb = &sandboxes[w];
        async move { print_1(sb).await.map(drop) }
    })
    .await?;
    drop(sandboxes);
    let bare = drive(clients, secs, |_| async { bwrap_print_1().await.map(drop) }).await?;
    let (base_rate, base_lat) = level_metrics("executor.baseline.bwrap_host", clients, &bare)?;
    let (rate, lat) = level_metrics("executor.throughput", clients, &level)?;
    Ok(vec![
        spare,
        reported,
        fresh,
        cell,
        first,
        bwrap,
        rate.vs(&base_rate),
        lat.vs(&base_lat),
        base_rate,
        base_lat,
    ])
}
