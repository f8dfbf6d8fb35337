//! Bodies of the session routes (and the paging query every list takes).

use crate::caller::Caller;
use chrono::{DateTime, Utc};
use sandbox_core::model::{
    DependencySpec, InstalledDependency, NetworkAttempt, NetworkMode, Session, SessionNetwork,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// A package, as requested.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DependencySpecDto {
    /// Package name (1-100 characters).
    pub name: String,
    /// Version constraint such as `==2.31.0` or `>=1.0`.
    #[serde(default)]
    pub version: Option<String>,
}

impl From<DependencySpecDto> for DependencySpec {
    fn from(d: DependencySpecDto) -> Self {
        DependencySpec { name: d.name, version: d.version }
    }
}

impl From<&DependencySpec> for DependencySpecDto {
    fn from(d: &DependencySpec) -> Self {
        DependencySpecDto { name: d.name.clone(), version: d.version.clone() }
    }
}

/// Query of `POST /api/v1/sessions/{id}/dependencies/install`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InstallDependenciesQuery {
    /// `true`: answer with Server-Sent Events once the install started: pip's output line by
    /// line (`output`), then `result` or `error`.
    #[serde(default)]
    pub stream: bool,
}

/// Whether a session may reach the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkModeDto {
    /// No network at all (the default).
    #[default]
    None,
    /// The destinations of `allow`, within what the operator permits, through the egress proxy.
    Allowlist,
}

/// A session's network policy (see the egress guide): `none`, or an allow-list of `host:port`
/// patterns (`pypi.org:443`, `*.githubusercontent.com:443`, `pypi.org:*`), each within the
/// server's `egress.permitted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(example = json!({"mode": "allowlist", "allow": ["pypi.org:443", "*.pythonhosted.org:443"]}))]
pub struct NetworkPolicyDto {
    /// `none` (default) or `allowlist`.
    pub mode: NetworkModeDto,
    /// `host:port` patterns; empty unless `mode` is `allowlist`.
    #[schema(max_items = 64)]
    pub allow: Vec<String>,
}

impl From<NetworkPolicyDto> for sandbox_egress::NetworkRequest {
    fn from(n: NetworkPolicyDto) -> Self {
        let mode = match n.mode {
            NetworkModeDto::None => sandbox_egress::Mode::None,
            NetworkModeDto::Allowlist => sandbox_egress::Mode::Allowlist,
        };
        sandbox_egress::NetworkRequest { mode, allow: n.allow }
    }
}

impl From<SessionNetwork> for NetworkPolicyDto {
    fn from(n: SessionNetwork) -> Self {
        let mode = match n.mode {
            NetworkMode::None => NetworkModeDto::None,
            NetworkMode::Allowlist => NetworkModeDto::Allowlist,
        };
        NetworkPolicyDto { mode, allow: n.allow }
    }
}

/// One attempt of a session to reach a destination through the egress proxy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NetworkAttemptResponse {
    /// The execution the attempt came from, as the sandbox's relay named it (informational:
    /// code in the sandbox can forge it).
    pub execution_id: Option<String>,
    /// `connect` (a tunnel, HTTPS) or `http` (a plain HTTP request, forwarded).
    #[schema(schema_with = network_kind)]
    pub kind: String,
    /// The destination's host as named (a lower-case name, or an address).
    pub host: String,
    /// Its port, when the request named one that could be read.
    pub port: Option<u16>,
    /// The address connected to, or refused, or that failed; absent when none was reached.
    pub address: Option<String>,
    /// `allowed`, `denied_policy`, `denied_address`, `denied_limit` or `error`.
    #[schema(schema_with = network_decision)]
    pub decision: String,
    /// Why: `allowed`; `not_in_allow_list`, `not_permitted_by_operator`; an address class
    /// (`loopback`, `private`, `link_local`, ...); `too_many_connections`; `bad_request`,
    /// `resolve_failed`, `connect_failed`, `connect_timeout`, `cancelled`.
    pub reason: String,
    /// Bytes sent to the destination.
    pub bytes_up: u64,
    /// Bytes received from it.
    pub bytes_down: u64,
    /// When the request arrived.
    #[serde(with = "crate::api::types::time::millis")]
    pub started_at: DateTime<Utc>,
    /// How long the attempt lasted, milliseconds.
    pub duration_ms: u64,
}

fn network_kind() -> utoipa::openapi::Object {
    super::string_enum("How the request asked.", ["connect", "http"])
}

fn network_decision() -> utoipa::openapi::Object {
    super::string_enum("What the proxy decided.", sandbox_egress::DecisionKind::ALL.map(|k| k.as_str()))
}

impl From<NetworkAttempt> for NetworkAttemptResponse {
    fn from(a: NetworkAttempt) -> Self {
        NetworkAttemptResponse {
            execution_id: a.execution_id,
            kind: a.kind,
            host: a.host,
            port: a.port,
            address: a.address,
            decision: a.decision,
            reason: a.reason,
            bytes_up: a.bytes_up,
            bytes_down: a.bytes_down,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
        }
    }
}

/// `POST /api/v1/sessions/{id}/dependencies/install`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"dependencies": [{"name": "requests", "version": "==2.31.0"}]}))]
pub struct InstallDependenciesRequest {
    /// Packages to add (1-50). A package asked for before is replaced by this request's
    /// version; the others keep the exact versions they have.
    #[schema(min_items = 1, max_items = 50)]
    pub dependencies: Vec<DependencySpecDto>,
    /// The index to install from; default the session's.
    #[serde(default)]
    #[schema(max_length = 512)]
    pub python_package_index_url: Option<String>,
    /// Whether a requested version may be installed over a different one the template ships
    /// (default `false`).
    #[serde(default)]
    pub allow_version_conflicts: Option<bool>,
}

/// `POST /api/v1/sessions`. Fields left out take the template's defaults.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"template_id": "python-basic", "timeout": 300, "cpu": "1", "memory": "512Mi"}))]
pub struct CreateSessionRequest {
    /// A session id of your choosing (1-64 of `[A-Za-z0-9_-]`); generated when left out.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub id: Option<String>,
    /// The template (`python-basic`, `multi-language`, `python-datascience`, ...).
    #[schema(min_length = 1, max_length = 64)]
    pub template_id: String,
    /// Idle timeout in seconds: the session ends this long after its last execution or file
    /// operation.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub timeout: Option<u32>,
    /// CPU cores (`"1"`, `"0.5"`, `"500m"`).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Memory (`"512Mi"`, `"1Gi"`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Disk (`"1Gi"`).
    #[serde(default)]
    pub disk: Option<String>,
    /// Environment variables for the session's executions.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Accepted for compatibility; events belong to executions.
    #[serde(default)]
    pub event: Option<Value>,
    /// Python packages to install (in an installer container with network access; the sandbox
    /// itself never has one). The session is answered at once and the install goes on in the
    /// background (`dependency_install_status`); code sent meanwhile waits for it. Packages the
    /// template ships in an acceptable version are not installed again.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub dependencies: Vec<DependencySpecDto>,
    /// Seconds allowed for installing `dependencies` (30 to `dependencies.max_install_timeout_sec`,
    /// 1800 by default). Default `dependencies.install_timeout_sec` (300).
    #[serde(default)]
    pub install_timeout: Option<u32>,
    /// Whether code is refused when the install fails (default `true`: executions, contexts and
    /// processes answer 409 `dependencies_failed`); with `false` code runs without the packages.
    /// Either way the session runs and `dependency_install_status` says `failed`.
    #[serde(default)]
    pub fail_on_dependency_error: Option<bool>,
    /// Whether a requested version may be installed over a different one the template ships
    /// (default `false`: such a request is refused).
    #[serde(default)]
    pub allow_version_conflicts: Option<bool>,
    /// Python package index URL (`http` or `https`, default `dependencies.default_index_url`).
    #[serde(default)]
    #[schema(max_length = 512)]
    pub python_package_index_url: Option<String>,
    /// Start with a copy of this session's workspace (for example a terminated one, to resume
    /// its work).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub source_session_id: Option<String>,
    /// What the session may reach on the network, through the server's egress proxy; default
    /// none. Refused with 422 `invalid_egress_pattern`, `invalid_egress_policy` or
    /// `egress_not_permitted`.
    #[serde(default)]
    pub network: Option<NetworkPolicyDto>,
}

/// Query of `POST /api/v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct CreateSessionQuery {
    /// `false`: answer at once with `creating` instead of waiting for the sandbox.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

/// Resource limits of a session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceLimitResponse {
    /// CPU cores.
    pub cpu: String,
    /// Memory.
    pub memory: String,
    /// Disk.
    pub disk: String,
    /// Most processes of one execution (the `executor.max_processes` setting).
    pub max_processes: Option<i64>,
}

/// A package installed for a session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InstalledDependencyResponse {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Where it is installed.
    pub install_location: String,
    /// When.
    #[serde(with = "crate::api::types::time::millis")]
    pub install_time: DateTime<Utc>,
    /// Whether the template's image ships it.
    pub is_from_template: bool,
}

impl From<&InstalledDependency> for InstalledDependencyResponse {
    fn from(d: &InstalledDependency) -> Self {
        InstalledDependencyResponse {
            name: d.name.clone(),
            version: d.version.clone(),
            install_location: d.install_location.clone(),
            install_time: d.install_time,
            is_from_template: d.is_from_template,
        }
    }
}

/// A session.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionResponse {
    /// Id.
    pub id: String,
    /// Template.
    pub template_id: String,
    /// `creating`, `running`, `terminated` or `failed`.
    #[schema(schema_with = super::session_status)]
    pub status: String,
    /// Resources.
    pub resource_limit: Option<ResourceLimitResponse>,
    /// Workspace location.
    pub workspace_path: Option<String>,
    /// The template's runtime (`python3.11`).
    pub language_runtime: String,
    /// The runtime backend (`docker`).
    pub runtime_type: String,
    /// Node the sandbox runs on.
    pub runtime_node: Option<String>,
    /// Container id.
    pub container_id: Option<String>,
    /// Pod name (Kubernetes).
    pub pod_name: Option<String>,
    /// Environment variables.
    pub env_vars: BTreeMap<String, String>,
    /// Idle timeout, seconds.
    pub timeout: u32,
    /// Package index (a password in it is shown as `***`).
    pub python_package_index_url: String,
    /// Packages asked for.
    pub requested_dependencies: Vec<DependencySpecDto>,
    /// Packages installed.
    pub installed_dependencies: Vec<InstalledDependencyResponse>,
    /// `pending`, `installing`, `completed` or `failed`.
    #[schema(schema_with = super::install_status)]
    pub dependency_install_status: String,
    /// The last install error (pip's error lines, or the tail of its output).
    pub dependency_install_error: Option<String>,
    /// The stable code of the last failed install: `package_not_found`,
    /// `package_index_unreachable`, `dependency_install_failed`, `dependency_install_timeout`,
    /// `installer_unavailable`, `dependencies_unsupported`, `template_image_missing`, or
    /// `dependency_install_interrupted` (the control plane stopped during it).
    pub dependency_install_error_code: Option<String>,
    /// Whether code is refused while the packages the session was created with failed to
    /// install.
    pub fail_on_dependency_error: bool,
    /// When the last install started.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub dependency_install_started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub dependency_install_completed_at: Option<DateTime<Utc>>,
    /// What the session may reach on the network (patterns in canonical form).
    pub network: NetworkPolicyDto,
    /// Why the session failed or ended, when it did.
    pub error_message: Option<String>,
    /// Created.
    #[serde(with = "crate::api::types::time::millis")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(with = "crate::api::types::time::millis")]
    pub updated_at: DateTime<Utc>,
    /// Ended.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Last execution or file operation.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// The id `caller` knows a session by: its owner, the name it chose (if it chose one); anyone
/// else (an admin), the session's own id.
pub fn shown_session_id(caller: &Caller, s: &Session) -> String {
    match &s.client_id {
        Some(chosen) if caller.key_id == s.owner_key_id => chosen.clone(),
        _ => s.id.clone(),
    }
}

impl SessionResponse {
    /// Renders a session for `caller`; `language_runtime` comes from its template. Where it runs
    /// (host path, node, container, pod) is shown to admin keys only.
    pub fn new(s: Session, language_runtime: String, caller: &Caller, max_processes: u64) -> Self {
        let id = shown_session_id(caller, &s);
        let s = if caller.is_admin {
            s
        } else {
            Session { workspace_path: None, runtime_node: None, container_id: None, sandbox_name: None, ..s }
        };
        let pod_name = (s.runtime_backend == "kubernetes").then(|| s.sandbox_name.clone()).flatten();
        SessionResponse {
            resource_limit: Some(ResourceLimitResponse {
                cpu: s.cpu.to_string(),
                memory: s.memory.to_string(),
                disk: s.disk.to_string(),
                max_processes: i64::try_from(max_processes).ok(),
            }),
            requested_dependencies: s.requested_dependencies.iter().map(Into::into).collect(),
            installed_dependencies: s.installed_dependencies.iter().map(Into::into).collect(),
            id,
            template_id: s.template_id,
            status: s.status.as_str().into(),
            workspace_path: s.workspace_path,
            language_runtime,
            runtime_type: s.runtime_backend,
            runtime_node: s.runtime_node,
            container_id: s.container_id,
            pod_name,
            env_vars: s.env_vars,
            timeout: s.timeout_sec,
            python_package_index_url: sandbox_core::packages::index::redact_index_url(
                &s.python_package_index_url,
            ),
            dependency_install_status: s.dependency_install_status.to_string(),
            dependency_install_error: s.dependency_install_error,
            dependency_install_error_code: s.dependency_install_error_code,
            fail_on_dependency_error: s.fail_on_dependency_error,
            dependency_install_started_at: s.dependency_install_started_at,
            dependency_install_completed_at: s.dependency_install_completed_at,
            network: s.network.into(),
            error_message: s.error_message,
            created_at: s.created_at,
            updated_at: s.updated_at,
            completed_at: s.completed_at,
            last_activity_at: s.last_activity_at,
        }
    }
}

/// Query of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListSessionsQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only this template.
    pub template_id: Option<String>,
    /// Page size (1-1000, default 50).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
}
