//! Request and response bodies of the REST API, field for field compatible with the API of the
//! Python control plane this server replaces (docs/design.md), plus the additions this server
//! makes.

use crate::auth::Caller;
use chrono::{DateTime, Utc};
use sandbox_core::model::{
    ApiKey, Artifact, DependencySpec, Execution, InstalledDependency, Session, Template,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy`.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// Seconds since start.
    pub uptime: f64,
}

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
#[derive(Debug, Deserialize, ToSchema)]
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
    /// Python packages to install before the session runs (in an installer container with
    /// network access; the sandbox itself never has one). Packages the template ships in an
    /// acceptable version are not installed again.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub dependencies: Vec<DependencySpecDto>,
    /// Seconds allowed for installing `dependencies` (30 to `dependencies.max_install_timeout_sec`,
    /// 1800 by default). Default `dependencies.install_timeout_sec` (300).
    #[serde(default)]
    pub install_timeout: Option<u32>,
    /// Whether a failed install fails the session (default `true`); with `false` the session
    /// runs without the packages and `dependency_install_status` says `failed`.
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
    /// Most processes in the sandbox.
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
    pub dependency_install_status: String,
    /// The last install error.
    pub dependency_install_error: Option<String>,
    /// When the last install started.
    pub dependency_install_started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub dependency_install_completed_at: Option<DateTime<Utc>>,
    /// Why the session failed or ended, when it did.
    pub error_message: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Last execution or file operation.
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
    pub fn new(s: Session, language_runtime: String, caller: &Caller) -> Self {
        let id = shown_session_id(caller, &s);
        let s = if caller.is_admin {
            s
        } else {
            Session { workspace_path: None, runtime_node: None, container_id: None, sandbox_name: None, ..s }
        };
        let pod_name = (s.runtime_type == "kubernetes").then(|| s.sandbox_name.clone()).flatten();
        SessionResponse {
            resource_limit: Some(ResourceLimitResponse {
                cpu: s.cpu.clone(),
                memory: s.memory.clone(),
                disk: s.disk.clone(),
                max_processes: Some(128),
            }),
            requested_dependencies: s.requested_dependencies.iter().map(Into::into).collect(),
            installed_dependencies: s.installed_dependencies.iter().map(Into::into).collect(),
            id,
            template_id: s.template_id,
            status: s.status.as_str().into(),
            workspace_path: s.workspace_path,
            language_runtime,
            runtime_type: s.runtime_type,
            runtime_node: s.runtime_node,
            container_id: s.container_id,
            pod_name,
            env_vars: s.env_vars,
            timeout: s.timeout_sec,
            python_package_index_url: crate::service::dependencies::redact_index_url(
                &s.python_package_index_url,
            ),
            dependency_install_status: s.dependency_install_status,
            dependency_install_error: s.dependency_install_error,
            dependency_install_started_at: s.dependency_install_started_at,
            dependency_install_completed_at: s.dependency_install_completed_at,
            error_message: s.error_message,
            created_at: s.created_at,
            updated_at: s.updated_at,
            completed_at: s.completed_at,
            last_activity_at: s.last_activity_at,
        }
    }
}

/// A page of sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionListResponse {
    /// This page.
    pub items: Vec<SessionResponse>,
    /// All matching sessions.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
    /// Whether more pages follow.
    pub has_more: bool,
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

/// Query of paged lists.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Page size (1-1000, default 50).
    pub limit: Option<i64>,
    /// Rows to skip (default 0).
    pub offset: Option<i64>,
}

/// `POST .../execute` and `.../execute-sync`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"code": "def handler(event):\n    return {'message': 'Hello, ' + event.get('name', 'World')}", "language": "python", "timeout": 10, "event": {"name": "World"}}))]
pub struct ExecuteCodeRequest {
    /// The program (at most 102400 bytes).
    #[schema(min_length = 1, max_length = 102400)]
    pub code: String,
    /// `python`, `javascript` or `shell`.
    #[schema(pattern = "^(python|javascript|shell)$")]
    pub language: String,
    /// Timeout in seconds (1-3600, default 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout: Option<u32>,
    /// Passed to a handler.
    #[serde(default)]
    pub event: Option<serde_json::Map<String, Value>>,
}

/// Query of `POST .../execute`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExecuteQuery {
    /// `true`: answer with Server-Sent Events: `started`, `stdout`/`stderr` chunks, `result`.
    #[serde(default)]
    pub stream: bool,
}

/// Query of `POST .../execute-sync`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExecuteSyncQuery {
    /// Accepted for compatibility (results are pushed, not polled).
    pub poll_interval: Option<f64>,
    /// Longest wait in seconds (10-3600, default 300); past it the current state is returned.
    pub sync_timeout: Option<u64>,
    /// `true`: answer with Server-Sent Events.
    #[serde(default)]
    pub stream: bool,
}

/// Answer of `POST .../execute`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecuteCodeResponse {
    /// The new execution.
    pub execution_id: String,
    /// Its session.
    pub session_id: String,
    /// `pending`.
    pub status: String,
    /// When recorded.
    pub created_at: Option<DateTime<Utc>>,
}

/// A file an execution created, modified or deleted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ArtifactResponse {
    /// Path relative to the workspace.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type from the extension.
    pub mime_type: String,
    /// `created`, `modified` or `deleted`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When observed.
    pub created_at: DateTime<Utc>,
    /// Not computed.
    pub checksum: Option<String>,
}

impl From<&Artifact> for ArtifactResponse {
    fn from(a: &Artifact) -> Self {
        ArtifactResponse {
            path: a.path.clone(),
            size: a.size,
            mime_type: a.mime_type.clone(),
            kind: a.change.clone(),
            created_at: a.created_at,
            checksum: None,
        }
    }
}

/// Resource use of an execution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionMetricsResponse {
    /// Wall time.
    pub duration_ms: f64,
    /// CPU time of the whole process tree.
    pub cpu_time_ms: Option<f64>,
    /// Peak memory of the largest process.
    pub peak_memory_mb: Option<f64>,
}

/// An execution.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionResponse {
    /// Id.
    pub id: String,
    /// Session.
    pub session_id: String,
    /// `pending`, `running`, `completed`, `failed`, `timeout` or `crashed`.
    pub status: String,
    /// The program.
    pub code: Option<String>,
    /// Its language.
    pub language: Option<String>,
    /// Timeout, seconds.
    pub timeout: Option<u32>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Why it did not complete.
    pub error_message: Option<String>,
    /// Seconds it ran.
    pub execution_time: Option<f64>,
    /// Standard output.
    pub stdout: Option<String>,
    /// Standard error.
    pub stderr: Option<String>,
    /// Workspace changes.
    pub artifacts: Vec<ArtifactResponse>,
    /// Retries.
    pub retry_count: u32,
    /// Recorded.
    pub created_at: Option<DateTime<Utc>>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// A handler's return value.
    pub return_value: Option<Value>,
    /// Resource use.
    pub metrics: Option<ExecutionMetricsResponse>,
}

impl ExecutionResponse {
    /// The same, naming its session `session_id` (what the caller calls it).
    pub fn in_session(self, session_id: String) -> Self {
        ExecutionResponse { session_id, ..self }
    }
}

impl From<Execution> for ExecutionResponse {
    fn from(e: Execution) -> Self {
        ExecutionResponse {
            artifacts: e.artifacts.iter().map(Into::into).collect(),
            metrics: e.metrics.map(|m| ExecutionMetricsResponse {
                duration_ms: m.duration_ms,
                cpu_time_ms: m.cpu_time_ms,
                peak_memory_mb: m.peak_memory_mb,
            }),
            id: e.id,
            session_id: e.session_id,
            status: e.status.as_str().into(),
            code: Some(e.code),
            language: Some(e.language.as_str().into()),
            timeout: Some(e.timeout_sec),
            exit_code: e.exit_code,
            error_message: e.error_message,
            execution_time: e.execution_time,
            stdout: e.stdout,
            stderr: e.stderr,
            retry_count: e.retry_count,
            created_at: Some(e.created_at),
            started_at: e.started_at,
            completed_at: e.completed_at,
            return_value: e.return_value,
        }
    }
}

/// A page of executions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExecutionListResponse {
    /// This page, newest first.
    pub items: Vec<ExecutionResponse>,
    /// All executions of the session.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
    /// Whether more pages follow.
    pub has_more: bool,
}

/// `POST /api/v1/templates`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTemplateRequest {
    /// Id.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub id: String,
    /// Name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Container image.
    #[schema(min_length = 1, max_length = 512, pattern = "^\\S+$")]
    pub image_url: String,
    /// `python3.11`, `nodejs20`, `java17` or `go1.21`.
    #[schema(pattern = "^(python3\\.11|nodejs20|java17|go1\\.21)$")]
    pub runtime_type: String,
    /// Default CPU cores (0.1-4, default 0.5).
    #[serde(default)]
    #[schema(minimum = 0.1, maximum = 4.0)]
    pub default_cpu_cores: Option<f64>,
    /// Default memory MiB (128-8192, default 512).
    #[serde(default)]
    #[schema(minimum = 128, maximum = 8192)]
    pub default_memory_mb: Option<u32>,
    /// Default disk MiB (256-51200, default 1024).
    #[serde(default)]
    #[schema(minimum = 256, maximum = 51200)]
    pub default_disk_mb: Option<u32>,
    /// Default timeout seconds (60-3600, default 300).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 3600)]
    pub default_timeout: Option<u32>,
    /// Default environment variables.
    #[serde(default)]
    pub default_env_vars: Option<BTreeMap<String, String>>,
    /// Python packages the image ships (`name==version`).
    #[serde(default)]
    pub pre_installed_packages: Option<Vec<String>>,
}

/// `PUT /api/v1/templates/{id}`: fields given replace the template's.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateTemplateRequest {
    /// Name.
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Container image.
    #[schema(min_length = 1, max_length = 512, pattern = "^\\S+$")]
    pub image_url: Option<String>,
    /// Default CPU cores.
    #[schema(minimum = 0.1, maximum = 4.0)]
    pub default_cpu_cores: Option<f64>,
    /// Default memory MiB.
    #[schema(minimum = 128, maximum = 8192)]
    pub default_memory_mb: Option<u32>,
    /// Default disk MiB.
    #[schema(minimum = 256, maximum = 51200)]
    pub default_disk_mb: Option<u32>,
    /// Default timeout seconds.
    #[schema(minimum = 60, maximum = 3600)]
    pub default_timeout: Option<u32>,
    /// Default environment variables.
    pub default_env_vars: Option<BTreeMap<String, String>>,
    /// Whether the template takes new sessions.
    pub is_active: Option<bool>,
}

/// A template.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateResponse {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Container image.
    pub image_url: String,
    /// Runtime type.
    pub runtime_type: String,
    /// Default CPU cores.
    pub default_cpu_cores: f64,
    /// Default memory MiB.
    pub default_memory_mb: u32,
    /// Default disk MiB.
    pub default_disk_mb: u32,
    /// Default timeout seconds.
    pub default_timeout_sec: u32,
    /// Default environment variables.
    pub default_env_vars: Option<BTreeMap<String, String>>,
    /// Python packages the image ships.
    pub pre_installed_packages: Vec<String>,
    /// Whether it takes new sessions.
    pub is_active: bool,
    /// Created.
    pub created_at: Option<DateTime<Utc>>,
    /// Last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<Template> for TemplateResponse {
    fn from(t: Template) -> Self {
        TemplateResponse {
            id: t.id,
            name: t.name,
            image_url: t.image_url,
            runtime_type: t.runtime_type,
            default_cpu_cores: t.default_cpu_cores,
            default_memory_mb: t.default_memory_mb,
            default_disk_mb: t.default_disk_mb,
            default_timeout_sec: t.default_timeout_sec,
            default_env_vars: Some(t.default_env_vars),
            pre_installed_packages: t.pre_installed_packages,
            is_active: t.is_active,
            created_at: Some(t.created_at),
            updated_at: Some(t.updated_at),
        }
    }
}

/// Answer of `DELETE /api/v1/templates/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedResponse {
    /// The id that was deleted.
    pub id: String,
    /// Always true.
    pub deleted: bool,
}

/// One entry of a workspace listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    /// Path relative to the workspace.
    pub path: String,
    /// The last component.
    pub name: String,
    /// `file`, `directory`, `symlink` or `other`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type from the extension (files only).
    pub mime_type: Option<String>,
    /// Last modification.
    pub modified_at: DateTime<Utc>,
}

/// `GET /api/v1/sessions/{id}/files`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FileListResponse {
    /// The session.
    pub session_id: String,
    /// The directory listed (`""` for the workspace root).
    pub path: String,
    /// Entries below it, in path order.
    pub files: Vec<FileInfo>,
    /// How many entries are returned.
    pub total: u64,
    /// Whether the listing stopped at `limit`.
    pub truncated: bool,
}

/// Query of the file listing.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListFilesQuery {
    /// A directory relative to the workspace root; the whole workspace when left out.
    pub path: Option<String>,
    /// Most entries (1-10000, default 1000).
    pub limit: Option<i64>,
}

/// Query of the upload.
#[derive(Debug, Deserialize, IntoParams)]
pub struct UploadQuery {
    /// Destination path relative to the workspace; ending in `/` (or naming a directory), the
    /// uploaded file's name is appended.
    pub path: Option<String>,
}

/// Answer of an upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadResponse {
    /// The session.
    pub session_id: String,
    /// Where the file was written.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// MIME type from the extension.
    pub mime_type: String,
}

/// Multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /api/v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// A name to recognise the key by.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub name: String,
    /// Whether it is an admin key.
    #[serde(default)]
    pub is_admin: bool,
}

/// An API key (never its secret, except once on creation).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyResponse {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// First characters of the secret.
    pub prefix: String,
    /// Admin key.
    pub is_admin: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The secret: only in the answer to a creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<ApiKey> for KeyResponse {
    fn from(k: ApiKey) -> Self {
        KeyResponse {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            is_admin: k.is_admin,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}

/// `GET /api/v1/health/detailed`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DetailedHealthResponse {
    /// `healthy` or `degraded`.
    pub status: String,
    /// The server's version.
    pub version: String,
    /// Seconds since start.
    pub uptime: f64,
    /// The database (`sqlite` or `mysql`) and whether it answers.
    pub database: ComponentHealth,
    /// The runtime backend and whether it answers.
    pub runtime: ComponentHealth,
    /// Workspace storage (`s3` mode only) and whether it answers.
    pub storage: Option<ComponentHealth>,
    /// Sessions by status.
    pub sessions: BTreeMap<String, u64>,
    /// This process's id among the replicas.
    pub instance_id: String,
    /// Whether this process runs the lifecycle loops (holds the lease).
    pub leader: bool,
}

/// One dependency's health.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComponentHealth {
    /// What it is.
    pub kind: String,
    /// Whether it answers.
    pub healthy: bool,
    /// The error, when it does not.
    pub error: Option<String>,
}

/// Answer of `POST /api/v1/health/sync`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncResponse {
    /// Sessions whose lost sandbox was recreated.
    pub sessions_recovered: u64,
    /// Sessions marked failed (sandbox lost for good, or stuck creating).
    pub sessions_failed: u64,
    /// Sandboxes no session or pool owns, removed.
    pub orphans_removed: u64,
    /// Pool sandboxes that were dead or abandoned, removed.
    pub pool_discarded: u64,
    /// Dependency installs interrupted by a stopped control plane, marked failed.
    pub installs_failed: u64,
    /// Sessions terminated for idling past their timeout or living past the maximum lifetime.
    pub expired_terminated: u64,
}

/// `GET /`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RootResponse {
    /// The service.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The OpenAPI document.
    pub openapi: String,
}
