//! Bodies of the template routes.

use chrono::{DateTime, Utc};
use sandbox_core::model::{ImagePull, Template, TemplateStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

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
    /// Whether its image is there: `ready` (sessions may use it), `pulling` (the runtime is
    /// pulling it; sessions are refused with 409 `template_not_ready`) or `failed` (the pull
    /// failed, see `image_pull.error`; sessions are refused with 409 `template_pull_failed`).
    pub status: TemplateStatusDto,
    /// The last pull of its image; `null` when the runtime had the image from the start.
    pub image_pull: Option<ImagePullResponse>,
    /// Created.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub created_at: Option<DateTime<Utc>>,
    /// Last changed.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<Template> for TemplateResponse {
    fn from(t: Template) -> Self {
        TemplateResponse {
            id: t.id,
            name: t.name,
            image_url: t.image_url,
            runtime_type: t.language_runtime,
            default_cpu_cores: t.default_cpu_cores,
            default_memory_mb: t.default_memory_mb,
            default_disk_mb: t.default_disk_mb,
            default_timeout_sec: t.default_timeout_sec,
            default_env_vars: Some(t.default_env_vars),
            pre_installed_packages: t.pre_installed_packages,
            is_active: t.is_active,
            status: t.status.into(),
            image_pull: t.image_pull.map(Into::into),
            created_at: Some(t.created_at),
            updated_at: Some(t.updated_at),
        }
    }
}

/// Where a template's image stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = TemplateStatus)]
pub enum TemplateStatusDto {
    /// The runtime has the image.
    Ready,
    /// The runtime is pulling the image.
    Pulling,
    /// Pulling the image failed.
    Failed,
}

impl From<TemplateStatus> for TemplateStatusDto {
    fn from(s: TemplateStatus) -> Self {
        match s {
            TemplateStatus::Ready => TemplateStatusDto::Ready,
            TemplateStatus::Pulling => TemplateStatusDto::Pulling,
            TemplateStatus::Failed => TemplateStatusDto::Failed,
        }
    }
}

/// How far the pull of a template's image got (what a progress bar needs), and how it ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImagePullResponse {
    /// Layer bytes downloaded so far.
    pub bytes_done: u64,
    /// Layer bytes to download, as far as the registry announced them (it may grow while
    /// layers are announced; 0 until the first is).
    pub bytes_total: u64,
    /// Layers downloaded and unpacked (or already on the host).
    pub layers_done: u32,
    /// Layers of the image, as far as announced.
    pub layers_total: u32,
    /// When the pull started.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended, either way; `null` while it runs.
    #[serde(with = "crate::api::types::time::opt_millis")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed; `null` unless `status` is `failed`.
    pub error: Option<ImagePullError>,
}

/// Why pulling a template's image failed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImagePullError {
    /// Stable: `image_not_found` (the registry has no such image or tag),
    /// `registry_unreachable`, `registry_denied` (credentials refused or needed),
    /// `pull_timed_out` (longer than `templates.pull_timeout_sec`) or `pull_failed` (anything
    /// else).
    pub code: String,
    /// What the container engine said.
    pub message: String,
}

impl From<ImagePull> for ImagePullResponse {
    fn from(p: ImagePull) -> Self {
        ImagePullResponse {
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            layers_done: p.layers_done,
            layers_total: p.layers_total,
            started_at: p.started_at,
            finished_at: p.finished_at,
            error: p.error.map(|e| ImagePullError { code: e.code, message: e.message }),
        }
    }
}

/// Answer of `DELETE /api/v1/templates/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeletedResponse {
    /// What happened (the Python control plane's answer).
    pub message: String,
    /// The id that was deleted.
    pub id: String,
    /// Always true.
    pub deleted: bool,
}
