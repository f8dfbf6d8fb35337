//! Reading a pod's status: whether a starting pod is ready, still on its way (and what it waits
//! for), or failed for good; and the [`SandboxInfo`] of a pod.

use super::objects::{EXECUTOR_CONTAINER, owner, spec_labels};
use crate::spec::{SandboxInfo, SandboxState};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use std::net::IpAddr;

/// Waiting reasons after which a pod with `restartPolicy: Never` will not start without someone
/// changing something (image, secret, node), so waiting longer only hides the problem.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Where a starting pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Ready, at this IP.
    Ready(IpAddr),
    /// Not yet; what it waits for, for a timeout message.
    Starting(String),
    /// It will not start.
    Failed {
        /// Kubernetes' reason.
        reason: String,
        /// Kubernetes' message.
        message: String,
        /// Whether the executor ran (so its logs say why it stopped).
        ran: bool,
    },
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn executor_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == EXECUTOR_CONTAINER)
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// Where `pod` stands on its way to ready.
pub(crate) fn progress(pod: &Pod) -> Progress {
    let terminated = executor_status(pod).and_then(|c| c.state.as_ref()?.terminated.as_ref());
    if let Some(t) = terminated {
        let mut message = format!("the executor exited with code {}", t.exit_code);
        if let Some(m) = t.message.as_deref().filter(|m| !m.is_empty()) {
            message.push_str(": ");
            message.push_str(m.trim());
        }
        let reason = t.reason.clone().unwrap_or_else(|| "Terminated".into());
        return Progress::Failed { reason, message, ran: true };
    }
    if matches!(phase(pod), "Failed" | "Succeeded") {
        let status = pod.status.as_ref();
        let reason = status.and_then(|s| s.reason.clone()).unwrap_or_else(|| phase(pod).to_owned());
        let message =
            status.and_then(|s| s.message.clone()).unwrap_or_else(|| format!("the pod {}", phase(pod)));
        return Progress::Failed { reason, message, ran: true };
    }
    if let Some(c) = condition(pod, "PodScheduled")
        && c.status == "False"
        && c.reason.as_deref() == Some("Unschedulable")
    {
        return Progress::Failed {
            reason: "Unschedulable".into(),
            message: c.message.clone().unwrap_or_default(),
            ran: false,
        };
    }
    let waiting = executor_status(pod).and_then(|c| c.state.as_ref()?.waiting.as_ref());
    if let Some(w) = waiting
        && let Some(reason) = w.reason.as_deref()
        && FATAL_WAITING.contains(&reason)
    {
        return Progress::Failed {
            reason: reason.to_owned(),
            message: w.message.clone().unwrap_or_default(),
            ran: false,
        };
    }
    let ready = condition(pod, "Ready").is_some_and(|c| c.status == "True");
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
    if let (true, Some(ip)) = (ready, ip) {
        return Progress::Ready(ip);
    }
    let mut seen = format!("pod {}", phase(pod));
    if let Some(w) = waiting {
        seen.push_str(&format!(", executor waiting ({})", w.reason.as_deref().unwrap_or("unknown")));
    }
    for c in ["PodScheduled", "Ready"].iter().filter_map(|t| condition(pod, t)).filter(|c| c.status != "True")
    {
        seen.push_str(&format!(", {}=False", c.type_));
        if let Some(m) = c.message.as_deref().or(c.reason.as_deref()) {
            seen.push_str(&format!(" ({m})"));
        }
    }
    Progress::Starting(seen)
}

/// The sandbox a pod is.
pub(crate) fn info(pod: &Pod) -> SandboxInfo {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let ready = condition(pod, "Ready").is_some_and(|c| c.status == "True");
    let state = match phase(pod) {
        _ if meta.deletion_timestamp.is_some() => SandboxState::Removing,
        "Pending" => SandboxState::Created,
        "Running" => SandboxState::Running,
        "Succeeded" | "Failed" => SandboxState::Exited,
        _ => SandboxState::Unknown,
    };
    let health = match state {
        SandboxState::Running if ready => "healthy",
        SandboxState::Running => "unhealthy",
        SandboxState::Created => "starting",
        _ => "unknown",
    };
    let terminated = executor_status(pod).and_then(|c| c.state.as_ref()?.terminated.as_ref());
    SandboxInfo {
        id: name.clone(),
        name: owner(pod).map_or(name, str::to_owned),
        state,
        health: health.to_owned(),
        created_at: meta.creation_timestamp.as_ref().and_then(time),
        image: pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == EXECUTOR_CONTAINER))
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        labels: spec_labels(meta),
        exit_code: terminated.map(|t| i64::from(t.exit_code)),
        oom_killed: terminated.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")),
        finished_at: terminated.and_then(|t| t.finished_at.as_ref()).and_then(time),
    }
}

fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::objects::pod_name;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": pod_name("sandbox-a"), "creationTimestamp": "2026-11-28T10:00:00Z",
                         "labels": {"io.sandbox.managed": "true"},
                         "annotations": {"io.sandbox.sandbox": "sandbox-a"}},
            "spec": {"containers": [{"name": "executor", "image": "img:1"}]},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn ready_needs_the_condition_and_an_ip() {
        let ready = json!({"phase": "Running", "podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(progress(&pod(ready)), Progress::Ready("10.1.2.3".parse().unwrap()));
        let no_ip = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        assert!(matches!(progress(&pod(no_ip)), Progress::Starting(_)));
        let not_ready = json!({"phase": "Running", "podIP": "10.1.2.3",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]});
        let Progress::Starting(seen) = progress(&pod(not_ready)) else { panic!() };
        assert!(seen.contains("Ready=False (ContainersNotReady)"), "{seen}");
    }

    #[test]
    fn fatal_states_carry_reason_and_message() {
        let cases = [
            (
                json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]}),
                "Unschedulable",
                "Insufficient cpu",
                false,
            ),
            (
                json!({"phase": "Pending", "containerStatuses": [{"name": "executor", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"i\""}}}]}),
                "ImagePullBackOff",
                "Back-off pulling",
                false,
            ),
            (
                json!({"phase": "Pending", "containerStatuses": [{"name": "executor", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"x\" not found"}}}]}),
                "CreateContainerConfigError",
                "secret",
                false,
            ),
            (
                json!({"phase": "Failed", "containerStatuses": [{"name": "executor", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                "Error",
                "exited with code 1",
                true,
            ),
            (
                json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
                "Evicted",
                "low on memory",
                true,
            ),
        ];
        for (status, want_reason, want_message, want_ran) in cases {
            let Progress::Failed { reason, message, ran } = progress(&pod(status.clone())) else {
                panic!("{status} did not fail")
            };
            assert_eq!((reason.as_str(), ran), (want_reason, want_ran));
            assert!(message.contains(want_message), "{message}");
        }
        // A slow pull is not a failure.
        let pulling = json!({"phase": "Pending", "containerStatuses": [{"name": "executor", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
        let Progress::Starting(seen) = progress(&pod(pulling)) else { panic!() };
        assert!(seen.contains("ContainerCreating"), "{seen}");
    }

    #[test]
    fn info_maps_phases() {
        let running = pod(json!({"phase": "Running", "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}]}));
        let i = info(&running);
        assert_eq!(
            (i.id.as_str(), i.name.as_str(), i.state, i.health.as_str()),
            (pod_name("sandbox-a").as_str(), "sandbox-a", SandboxState::Running, "healthy")
        );
        assert_eq!(i.image, "img:1");
        assert_eq!(i.created_at.unwrap().to_rfc3339(), "2026-11-28T10:00:00+00:00");
        assert_eq!(i.labels["io.sandbox.managed"], "true");
        assert_eq!(info(&pod(json!({"phase": "Pending"}))).state, SandboxState::Created);
        let oom =
            info(&pod(json!({"phase": "Failed", "containerStatuses": [{"name": "executor", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})));
        assert_eq!((oom.state, oom.exit_code, oom.oom_killed), (SandboxState::Exited, Some(137), true));
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        assert_eq!(info(&deleting).state, SandboxState::Removing);
    }
}
