//! Package installer containers on Docker: the template's image running pip on no network (its
//! only way out the egress proxy's socket and a relay on loopback), as the sandbox user,
//! without capabilities, on a read-only image, writing only into the fresh target directory it
//! is given. It runs until it exits or its timeout, then goes.

use super::{DockerRuntime, engine_error, is_not_found};
use crate::RuntimeError;
use crate::spec::{INSTALLER_ROLE, InstallerOutcome, InstallerProgress, InstallerSpec, labels};
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sandbox_protocol::contract::{EGRESS_DIR, EGRESS_SOCKET_NAME, EXECUTOR_PATH};
use std::collections::HashMap;

/// Lines of output kept from an installer.
const OUTPUT_LINES: usize = 200;

/// How long the last of an installer's output may take to arrive after it stopped.
const FOLLOW_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest line passed on as progress; the rest of a longer one is cut.
const MAX_PROGRESS_LINE: usize = 4096;

/// Passes an installer's output (stdout and stderr, as Docker interleaves them) to `lines`, one
/// line at a time, until the container stops or the receiver goes away.
async fn follow(docker: bollard::Docker, id: String, lines: InstallerProgress) {
    let opts = LogsOptionsBuilder::default().stdout(true).stderr(true).follow(true).build();
    let mut stream = docker.logs(&id, Some(opts));
    let mut pending = Vec::new();
    // False once the receiver is gone; a full channel only loses the line.
    let send = |line: &[u8]| {
        let line = String::from_utf8_lossy(&line[..line.len().min(MAX_PROGRESS_LINE)]);
        let sent = lines.try_send(line.trim_end_matches('\r').to_owned());
        !matches!(sent, Err(tokio::sync::mpsc::error::TrySendError::Closed(_)))
    };
    while let Some(Ok(chunk)) = stream.next().await {
        pending.extend_from_slice(&chunk.into_bytes());
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if !send(&line[..end]) {
                return;
            }
        }
        if pending.len() > MAX_PROGRESS_LINE {
            let line = std::mem::take(&mut pending);
            if !send(&line) {
                return;
            }
        }
    }
    if !pending.is_empty() {
        send(&pending);
    }
}

/// Builds the create request of an installer that must be done by `deadline` (Unix seconds).
pub fn installer_config(spec: &InstallerSpec, deadline: i64) -> ContainerCreateBody {
    let mut all_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.insert(labels::MANAGED.into(), "true".into());
    all_labels.insert(labels::ROLE.into(), INSTALLER_ROLE.into());
    all_labels.insert(labels::DEADLINE.into(), deadline.to_string());
    let memory = spec.memory.bytes() as i64;
    let mut binds = vec![
        format!("{}:{}:rw", spec.target_dir.display(), InstallerSpec::TARGET),
        format!("{}:/tmp:rw", spec.scratch_dir.display()),
    ];
    // Only the proxy's socket leads out: the relay (the template's executor) listens on
    // loopback and runs the command with the proxy variables pointing at it.
    binds.push(format!("{}:{EGRESS_DIR}:ro", spec.egress_dir.display()));
    let socket = format!("{EGRESS_DIR}/{EGRESS_SOCKET_NAME}");
    let relay = [EXECUTOR_PATH, "egress-relay", "--socket", &socket, "--execution", &spec.name, "--"];
    let command: Vec<String> =
        relay.into_iter().map(str::to_owned).chain(spec.command.iter().cloned()).collect();
    let host = HostConfig {
        memory: Some(memory),
        memory_swap: Some(memory),
        cpu_period: Some(super::config::CPU_PERIOD),
        cpu_quota: Some(super::config::cpu_quota(spec.cpu)),
        pids_limit: Some(spec.pids_limit),
        // Like a sandbox, no network: the index is reached through the relay and the proxy.
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(true),
        binds: Some(binds),
        ipc_mode: Some("private".into()),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([("max-size".into(), "1m".into())])),
        }),
        ..Default::default()
    };
    let (entrypoint, args) = command.split_first().map_or((None, None), |(p, a)| (Some(p.clone()), Some(a)));
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: entrypoint.map(|p| vec![p]),
        cmd: args.map(<[String]>::to_vec),
        env: Some(
            ["HOME=/tmp".to_owned(), "TMPDIR=/tmp".into(), "PYTHONUNBUFFERED=1".into()]
                .into_iter()
                .chain(spec.env.iter().map(|(k, v)| format!("{k}={v}")))
                .collect(),
        ),
        user: Some(format!("{0}:{0}", spec.uid)),
        working_dir: Some("/tmp".into()),
        hostname: Some("installer".into()),
        labels: Some(all_labels),
        host_config: Some(host),
        ..Default::default()
    }
}

impl DockerRuntime {
    /// Creates, runs, waits for and removes an installer.
    pub(super) async fn installer(
        &self,
        spec: &InstallerSpec,
        progress: Option<InstallerProgress>,
    ) -> Result<InstallerOutcome, RuntimeError> {
        let deadline = chrono::Utc::now().timestamp() + spec.timeout.as_secs() as i64;
        let opts = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let id = match self.docker.create_container(Some(opts), installer_config(spec, deadline)).await {
            Ok(c) => c.id,
            Err(e) if is_not_found(&e) => return Err(RuntimeError::ImageNotFound(spec.image.clone())),
            Err(e) => return Err(engine_error(e)),
        };
        let outcome = self.run_to_end(&id, spec, progress).await;
        if let Err(e) = crate::Runtime::remove(self, &id).await {
            tracing::warn!(container = %id, error = %e, "could not remove an installer container");
        }
        outcome
    }

    async fn run_to_end(
        &self,
        id: &str,
        spec: &InstallerSpec,
        progress: Option<InstallerProgress>,
    ) -> Result<InstallerOutcome, RuntimeError> {
        self.docker.start_container(id, None).await.map_err(engine_error)?;
        let follower = progress.map(|lines| tokio::spawn(follow(self.docker.clone(), id.to_owned(), lines)));
        let wait = WaitContainerOptionsBuilder::default().condition("not-running").build();
        let mut waiting = self.docker.wait_container(id, Some(wait));
        // A non-zero exit is an error item here; the exit code is read from the container below.
        let finished = tokio::time::timeout(spec.timeout, waiting.next()).await.is_ok();
        drop(waiting);
        if let Some(follower) = follower {
            // The log stream ends with the container; a stuck one is cut off.
            let abort = follower.abort_handle();
            if tokio::time::timeout(FOLLOW_GRACE, follower).await.is_err() {
                abort.abort();
            }
        }
        if !finished {
            tracing::warn!(container = %id, timeout_s = spec.timeout.as_secs(), "installer timed out; killing it");
        }
        let output = crate::Runtime::logs(self, id, OUTPUT_LINES).await.unwrap_or_default();
        if !finished {
            return Ok(InstallerOutcome { exit_code: None, output, oom_killed: false });
        }
        let info = crate::Runtime::status(self, id)
            .await?
            .ok_or_else(|| RuntimeError::Engine("the installer container vanished".into()))?;
        Ok(InstallerOutcome { exit_code: info.exit_code, output, oom_killed: info.oom_killed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_core::{CpuQuantity, MemoryQuantity};

    fn spec() -> InstallerSpec {
        InstallerSpec {
            name: "installer-sess_1-1".into(),
            image: "sandbox/python-basic:latest".into(),
            command: vec!["python3".into(), "-m".into(), "pip".into(), "install".into(), "six".into()],
            env: [("PIP_INDEX_URL".to_owned(), "https://u:secret@pypi.corp/simple/".to_owned())].into(),
            target_dir: "/data/deps/v1".into(),
            scratch_dir: "/data/deps/.scratch-v1".into(),
            egress_dir: "/data/sessions/sess_1/installer-egress".into(),
            cpu: CpuQuantity::from_millis(1000).unwrap(),
            memory: MemoryQuantity::from_mib(1024).unwrap(),
            pids_limit: 256,
            timeout: std::time::Duration::from_secs(300),
            labels: [(labels::SESSION.to_owned(), "sess_1".to_owned())].into(),
            uid: 61_000,
        }
    }

    #[test]
    fn an_installer_is_hardened_like_a_sandbox_and_reaches_out_only_through_the_relay() {
        let c = installer_config(&spec(), 1_700_000_000);
        let h = c.host_config.as_ref().unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(h.security_opt.as_deref(), Some(&["no-new-privileges".to_owned()][..]));
        assert_eq!(
            (h.readonly_rootfs, h.pids_limit, h.memory, h.memory_swap),
            (Some(true), Some(256), Some(1 << 30), Some(1 << 30))
        );
        assert_eq!(
            h.binds.as_deref().unwrap(),
            [
                "/data/deps/v1:/target:rw",
                "/data/deps/.scratch-v1:/tmp:rw",
                "/data/sessions/sess_1/installer-egress:/run/sandbox-egress:ro"
            ]
        );
        assert!(h.privileged.is_none() && h.cap_add.is_none() && h.devices.is_none());
        assert_eq!(c.user.as_deref(), Some("61000:61000"));
        assert_eq!(c.entrypoint.as_deref(), Some(&[EXECUTOR_PATH.to_owned()][..]));
        assert_eq!(
            c.cmd.as_ref().unwrap().join(" "),
            "egress-relay --socket /run/sandbox-egress/proxy.sock --execution installer-sess_1-1 -- python3 -m pip install six"
        );
        assert!(
            c.env.as_ref().unwrap().contains(&"PIP_INDEX_URL=https://u:secret@pypi.corp/simple/".to_owned())
        );
        let l = c.labels.unwrap();
        assert_eq!((l[labels::ROLE].as_str(), l[labels::DEADLINE].as_str()), (INSTALLER_ROLE, "1700000000"));
        assert_eq!((l[labels::SESSION].as_str(), l[labels::MANAGED].as_str()), ("sess_1", "true"));
    }
}
