//! The local Docker daemon: `docker run`/API/`docker exec` baselines, containers, label cleanup.

use anyhow::{Context, Result, bail, ensure};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Instant;
use tokio::process::Command;

/// The label on every container this tool creates itself (value: the run id).
pub const RUN_LABEL: &str = "io.sandbox.bench-run";

/// Connects to the local daemon (its Unix socket) and agrees on an API version.
pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_local_defaults().context("connecting to Docker")?;
    docker.negotiate_version().await.context("asking Docker for its API version")
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs a command to its end; an error unless it exits 0 with exactly `stdout`.
async fn run_checked(cmd: &mut Command, what: &str, stdout: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("starting {what}"))?;
    ensure!(
        out.status.success() && out.stdout == stdout.as_bytes(),
        "{what} failed ({}): stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Times `docker run --rm --network none --entrypoint python3 IMAGE -c pass` (the CLI waits
/// until the container is removed).
pub async fn run_pass(image: &str, run_id: &str) -> Result<f64> {
    let mut cmd = Command::new("docker");
    cmd.args(["run", "--rm", "--network", "none", "--label", &format!("{RUN_LABEL}={run_id}")]).args([
        "--entrypoint",
        "python3",
        image,
        "-c",
        "pass",
    ]);
    let t = Instant::now();
    run_checked(&mut cmd, "docker run", "").await?;
    Ok(ms_since(t))
}

/// Times create + start + wait (until it exits, status 0) through the Docker API of a container
/// running `python3 -c pass` without network; the removal afterwards is not timed.
pub async fn api_create_start_wait(docker: &Docker, image: &str, run_id: &str) -> Result<f64> {
    let body = ContainerCreateBody {
        image: Some(image.into()),
        entrypoint: Some(vec!["python3".into()]),
        cmd: Some(vec!["-c".into(), "pass".into()]),
        labels: Some(HashMap::from([(RUN_LABEL.to_owned(), run_id.to_owned())])),
        network_disabled: Some(true),
        host_config: Some(HostConfig { network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    };
    let t = Instant::now();
    let created = docker
        .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
        .await
        .context("Docker API: create")?;
    let outcome = async {
        docker.start_container(&created.id, None).await.context("Docker API: start")?;
        let wait = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut stream = docker.wait_container(&created.id, Some(wait));
        match stream.next().await {
            Some(Ok(r)) if r.status_code == 0 => Ok(ms_since(t)),
            Some(Ok(r)) => bail!("Docker API: the container exited with {}", r.status_code),
            Some(Err(e)) => Err(e).context("Docker API: wait"),
            None => bail!("Docker API: wait ended without a status"),
        }
    }
    .await;
    let removed = docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).v(true).build()),
        )
        .await
        .context("Docker API: remove");
    let ms = outcome?;
    removed?;
    Ok(ms)
}

/// Times `docker exec CONTAINER python3 -c 'print(1)'`.
pub async fn exec_print_1(container: &str) -> Result<f64> {
    let mut cmd = Command::new("docker");
    cmd.args(["exec", container, "python3", "-c", "print(1)"]);
    let t = Instant::now();
    run_checked(&mut cmd, "docker exec", "1\n").await?;
    Ok(ms_since(t))
}

/// The name the server gives a session's container.
pub fn container_of(session: &str) -> String {
    format!("sandbox-{session}")
}

/// A running container's full id and the host pid of its first process.
pub async fn running(docker: &Docker, name: &str) -> Result<(String, u32)> {
    let c = docker.inspect_container(name, None).await.with_context(|| format!("inspecting {name}"))?;
    let state = c.state.unwrap_or_default();
    ensure!(state.running == Some(true), "container {name} is not running");
    let pid = state.pid.filter(|p| *p > 0).with_context(|| format!("container {name} has no pid"))?;
    Ok((c.id.unwrap_or_default(), pid as u32))
}

fn labelled(label: &str) -> Option<Vec<String>> {
    let listed = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output();
    match listed {
        Ok(o) if o.status.success() => {
            Some(String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect())
        }
        other => {
            eprintln!("warning: could not list containers labelled {label}: {other:?}");
            None
        }
    }
}

/// Removes (forcibly, with volumes) every container carrying `label` (`key=value`), using the
/// CLI so it also works from `Drop`, and waits up to 30 s until none is left (a removal the
/// server started may still be in progress). What remains is reported on stderr.
pub fn remove_labelled_blocking(label: &str) {
    let Some(ids) = labelled(label) else { return };
    if ids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("docker").args(["rm", "-f", "-v"]).args(&ids).output();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match labelled(label) {
            Some(left) if left.is_empty() => return,
            Some(left) if Instant::now() >= deadline => {
                eprintln!("warning: containers labelled {label} are still there: {left:?}");
                return;
            }
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
            None => return,
        }
    }
}
