//! Helpers for the end-to-end tests in `tests/`: real sandbox containers on the local Docker
//! daemon, and the conformance corpus with its checker.

pub mod conformance;
pub mod pypi;
pub mod registry;
pub mod s3;

use sandbox_core::Language;
use sandbox_executor_client::ExecutorClient;
use sandbox_protocol::ExecRequest;
use sandbox_runtime::docker::bollard::models::ContainerCreateBody;
use sandbox_runtime::docker::{DockerConfig, DockerRuntime, config::container_config};
use sandbox_runtime::{RuntimeError, SandboxSpec};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Removes what a test server left under its data directory: the sandbox container of every
/// session directory (pool sandboxes included) and the workspace mounts. For `Drop`
/// implementations of test fixtures; errors are ignored (the thing may already be gone).
pub fn clean_data_dir(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("sessions")) else { return };
    for e in entries.flatten() {
        let name = format!("sandbox-{}", e.file_name().to_string_lossy());
        let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", &name]).output();
        let installers = format!("name=installer-{}-", e.file_name().to_string_lossy());
        if let Ok(out) =
            std::process::Command::new("docker").args(["ps", "-aq", "--filter", &installers]).output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        let _ = std::process::Command::new("umount").arg(e.path().join("workspace")).output();
    }
}

/// The environment variable naming a prefix put before every image name, as
/// `IMAGE_PREFIX=ctx- images/build.sh` builds `ctx-sandbox/python-basic:latest`.
pub const IMAGE_PREFIX_VAR: &str = "IMAGE_PREFIX";

/// The image of a template, as `images/build.sh` tags it (with `$IMAGE_PREFIX` in front).
pub fn image(template: &str) -> String {
    image_with_prefix(&std::env::var(IMAGE_PREFIX_VAR).unwrap_or_default(), template)
}

fn image_with_prefix(prefix: &str, template: &str) -> String {
    format!("{prefix}sandbox/{template}:latest")
}

/// A request to run `code`, with an id no other request of this process has.
pub fn exec_request(language: Language, code: &str, timeout_secs: u64) -> ExecRequest {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    ExecRequest {
        execution_id: format!("t{}", SEQ.fetch_add(1, Ordering::Relaxed)),
        language,
        code: code.into(),
        event: None,
        timeout_ms: timeout_secs * 1000,
        env: Default::default(),
        function_name: None,
        mode: Default::default(),
    }
}

/// A sandbox container for one test, removed (with its directories) when dropped.
pub struct TestSandbox {
    /// The container id.
    pub id: String,
    /// Its executor.
    pub executor: ExecutorClient,
    /// The host directory mounted at `/workspace`.
    pub workspace: PathBuf,
    /// The runtime that made it.
    pub runtime: DockerRuntime,
    _dir: tempfile::TempDir,
}

impl TestSandbox {
    /// Starts a sandbox from `template` with the platform's hardened configuration.
    pub async fn start(template: &str) -> TestSandbox {
        Self::start_with(template, |_| {}, |_| {})
            .await
            .unwrap_or_else(|e| panic!("cannot start a {template} sandbox: {e}"))
    }

    /// Like [`start`](Self::start), after letting `spec` change the spec and `container` the
    /// create request built from it.
    pub async fn start_with(
        template: &str,
        spec: impl FnOnce(&mut SandboxSpec),
        container: impl FnOnce(&mut ContainerCreateBody),
    ) -> Result<TestSandbox, RuntimeError> {
        let tweak = spec;
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::Builder::new().prefix("sandbox-e2e-").tempdir().expect("temp dir");
        let name = format!("sandbox-e2e-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let mut spec =
            SandboxSpec::new(&name, image(template), dir.path().join("workspace"), dir.path().join("run"));
        tweak(&mut spec);
        let runtime = DockerRuntime::connect(DockerConfig::default()).await?;
        let mut body = container_config(&spec);
        container(&mut body);
        let sb = runtime.create_with_config(&spec, body).await?;
        Ok(TestSandbox {
            id: sb.id,
            executor: sb.executor,
            workspace: spec.workspace_dir,
            runtime,
            _dir: dir,
        })
    }

    /// Like [`start`](Self::start), with these `SANDBOX_EXECUTOR_*` settings for the executor.
    pub async fn with_settings(template: &str, settings: &[(&str, &str)]) -> TestSandbox {
        let env: Vec<(String, String)> =
            settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::start_with(template, |spec| spec.executor_env.extend(env), |_| {})
            .await
            .unwrap_or_else(|e| panic!("cannot start a {template} sandbox: {e}"))
    }

    /// Resident memory of the container's executor (its first process), in MiB.
    pub fn executor_rss_mib(&self) -> f64 {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Pid}}", &self.id])
            .output()
            .expect("docker inspect runs");
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the executor runs");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        kib / 1024.0
    }

    /// Processes in the container, as `docker top` lists them (command lines).
    pub fn processes(&self) -> Vec<String> {
        let out = std::process::Command::new("docker")
            .args(["top", &self.id, "-eo", "pid,args"])
            .output()
            .expect("docker top runs");
        String::from_utf8_lossy(&out.stdout).lines().skip(1).map(|l| l.trim().to_owned()).collect()
    }

    /// The host path of a workspace file.
    pub fn workspace_path(&self, rel: &str) -> PathBuf {
        Path::new(&self.workspace).join(rel)
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", &self.id]).output();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn images_are_named_as_build_sh_tags_them() {
        assert_eq!(super::image_with_prefix("", "python-basic"), "sandbox/python-basic:latest");
        assert_eq!(super::image_with_prefix("ctx-", "multi-language"), "ctx-sandbox/multi-language:latest");
    }
}
