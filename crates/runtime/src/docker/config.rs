//! The hardened container configuration, as code: a [`SandboxSpec`] becomes Docker's create
//! request. This is the "first layer" of the Python control plane's design (docs/design.md)
//! with the changes bwrap needs, each explained.

use crate::profile::container_profile_json;
use crate::spec::{SandboxSpec, labels};
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};
use sandbox_protocol::contract::{
    CONTAINER_SOCKET_DIR, DEPS_DIR, EGRESS_DIR, EXECUTOR_PATH, SOCKET_FILE_NAME, WORKSPACE_DIR,
    env as executor_env,
};
use std::collections::HashMap;

/// CFS period used with `CpuQuota` (the Python control plane's value).
pub const CPU_PERIOD: i64 = 100_000;

/// The CFS quota for `cpu` cores per [`CPU_PERIOD`].
pub fn cpu_quota(cpu: sandbox_core::CpuQuantity) -> i64 {
    i64::from(cpu.millis()) * CPU_PERIOD / 1000
}

/// Builds the create request for `spec`.
pub fn container_config(spec: &SandboxSpec) -> ContainerCreateBody {
    let mut env: Vec<String> = vec![
        format!("{}={CONTAINER_SOCKET_DIR}/{SOCKET_FILE_NAME}", executor_env::SOCKET),
        format!("{}={WORKSPACE_DIR}", executor_env::WORKSPACE),
    ];
    let mut binds = vec![
        format!("{}:{WORKSPACE_DIR}:rw", spec.workspace_dir.display()),
        format!("{}:{CONTAINER_SOCKET_DIR}:rw", spec.socket_dir.display()),
    ];
    if let Some(deps) = &spec.deps_dir {
        binds.push(format!("{}:{DEPS_DIR}:ro", deps.display()));
        env.push(format!("{}={DEPS_DIR}", executor_env::DEPS_DIR));
    }
    if let Some(egress) = &spec.egress_dir {
        binds.push(format!("{}:{EGRESS_DIR}:ro", egress.display()));
    }
    env.extend(spec.executor_env.iter().map(|(k, v)| format!("{k}={v}")));

    let mut all_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    all_labels.insert(labels::MANAGED.into(), "true".into());
    all_labels.insert(labels::SANDBOX.into(), spec.name.clone());

    let memory = spec.memory.bytes() as i64;
    let host = HostConfig {
        // Resources: memory + swap equal means no swap; CPU as a CFS quota; a process cap.
        memory: Some(memory),
        memory_swap: Some(memory),
        cpu_period: Some(CPU_PERIOD),
        cpu_quota: Some(cpu_quota(spec.cpu)),
        pids_limit: Some(spec.pids_limit),
        // No network at all: the control plane talks to the executor through the socket
        // directory, never over a network.
        network_mode: Some("none".into()),
        // No capabilities, no privilege gain, and the project's seccomp profile (Docker's
        // default plus the calls bwrap needs; see `profile`).
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into(), format!("seccomp={}", container_profile_json())]),
        // bwrap mounts a fresh /proc for each execution; the kernel refuses that while parts of
        // the container's /proc are masked, so system paths are left unmasked. User code only
        // ever sees bwrap's private /proc, and the container runs as the sandbox uid without
        // capabilities, so it cannot use what unmasking exposes.
        masked_paths: Some(vec![]),
        readonly_paths: Some(vec![]),
        // The image is read-only; only the workspace, the socket directory and /tmp are writable.
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".into(),
            format!("rw,noexec,nosuid,size={}", spec.tmp_size.bytes()),
        )])),
        binds: Some(binds),
        ipc_mode: Some("private".into()),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([("max-size".into(), "10m".into()), ("max-file".into(), "3".into())])),
        }),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: Some(vec![EXECUTOR_PATH.into()]),
        cmd: Some(vec!["serve".into()]),
        env: Some(env),
        user: Some(format!("{0}:{0}", spec.uid)),
        working_dir: Some(WORKSPACE_DIR.into()),
        hostname: Some("sandbox".into()),
        labels: Some(all_labels),
        network_disabled: Some(true),
        stop_timeout: Some(5),
        host_config: Some(host),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SandboxSpec {
        let mut s =
            SandboxSpec::new("sbx-1", "sandbox/python-basic:latest", "/data/ws".into(), "/data/run".into());
        s.cpu = "0.5".parse().unwrap();
        s.memory = "256Mi".parse().unwrap();
        s.labels.insert(labels::SESSION.into(), "sess_1".into());
        s.deps_dir = Some("/data/deps".into());
        s.egress_dir = Some("/data/egress".into());
        s
    }

    #[test]
    fn is_hardened() {
        let c = container_config(&spec());
        let h = c.host_config.as_ref().unwrap();
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        let sec = h.security_opt.as_ref().unwrap();
        assert!(sec.contains(&"no-new-privileges".to_string()));
        let profile = sec.iter().find_map(|s| s.strip_prefix("seccomp=")).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(profile).unwrap();
        assert_eq!(parsed["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(c.user.as_deref(), Some("61000:61000"), "a uid no host account uses");
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.privileged, None);
        assert_eq!(h.pids_limit, Some(128));
        assert_eq!(h.tmpfs.as_ref().unwrap()["/tmp"], format!("rw,noexec,nosuid,size={}", 512 << 20));
        let log = h.log_config.as_ref().unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        assert_eq!(log.config.as_ref().unwrap()["max-size"], "10m");
        assert_eq!(log.config.as_ref().unwrap()["max-file"], "3");
    }

    #[test]
    fn applies_resources_without_swap() {
        let c = container_config(&spec());
        let h = c.host_config.unwrap();
        assert_eq!(h.memory, Some(256 << 20));
        assert_eq!(h.memory_swap, h.memory);
        assert_eq!((h.cpu_quota, h.cpu_period), (Some(50_000), Some(100_000)));
    }

    #[test]
    fn mounts_and_labels() {
        let c = container_config(&spec());
        let binds = c.host_config.unwrap().binds.unwrap();
        assert_eq!(
            binds,
            [
                "/data/ws:/workspace:rw",
                "/data/run:/run/sandbox:rw",
                "/data/deps:/opt/sandbox/deps:ro",
                "/data/egress:/run/sandbox-egress:ro",
            ]
        );
        let l = c.labels.unwrap();
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[labels::SANDBOX], "sbx-1");
        assert_eq!(l[labels::SESSION], "sess_1");
    }
}
