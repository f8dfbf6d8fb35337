//! Templates: the ones every new installation starts with, validation, creating, reading,
//! changing and deleting them (changes for admin keys only), and pulling the images they name.

use crate::caller::Caller;
use crate::service::error::{FieldError, Result, ServiceError};
use crate::settings::TemplateSettings;
use chrono::Utc;
use sandbox_core::model::{ImagePull, PullError, Template, TemplateStatus};
use sandbox_runtime::{ImageRef, PullProgress, Runtime, RuntimeError};
use sandbox_store::{Page, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// `(id, name, runtime_type, packages the image ships)` of the built-in templates, matching
/// `images/templates.tsv`.
const BUILT_IN: &[(&str, &str, &str, &[&str])] = &[
    ("python-basic", "Python (basic)", "python3.11", &[]),
    ("multi-language", "Python, Node.js and shell", "python3.11", &[]),
    (
        "python-datascience",
        "Python for data science",
        "python3.11",
        &["numpy==1.24.2", "pandas==1.5.3", "matplotlib==3.6.3", "scipy==1.10.1"],
    ),
];

/// The image a built-in template uses, with `prefix` (the `image_prefix` setting) in front.
pub fn image_of(prefix: &str, template_id: &str) -> String {
    format!("{prefix}sandbox/{template_id}:latest")
}

/// Stores the built-in templates that are missing (existing ones are left as they are), their
/// images named with `image_prefix` in front.
pub async fn seed(store: &dyn Store, image_prefix: &str) -> Result<()> {
    for (id, name, runtime, packages) in BUILT_IN {
        if store.template(id).await?.is_some() {
            continue;
        }
        let now = Utc::now();
        let t = Template {
            id: (*id).into(),
            name: (*name).into(),
            image_url: image_of(image_prefix, id),
            language_runtime: (*runtime).into(),
            default_cpu_cores: 1.0,
            default_memory_mb: 512,
            default_disk_mb: 1024,
            default_timeout_sec: 300,
            default_env_vars: BTreeMap::new(),
            pre_installed_packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            is_active: true,
            status: TemplateStatus::Ready,
            image_pull: None,
            created_at: now,
            updated_at: now,
        };
        match store.insert_template(&t).await {
            Ok(()) | Err(sandbox_store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The runtime types templates may declare (the Python control plane's list).
pub const RUNTIME_TYPES: &[&str] = &["python3.11", "nodejs20", "java17", "go1.21"];

/// Checks a template's fields against the Python control plane's bounds.
pub fn validate(t: &Template) -> Result<()> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    if !sandbox_protocol::contract::valid_id(&t.id) {
        bad("id", "must be 1-64 characters of letters, digits, '_' and '-'".into());
    }
    if t.name.trim().is_empty() || t.name.len() > 255 {
        bad("name", "must be 1-255 characters".into());
    }
    if let Err(e) = ImageRef::parse(&t.image_url) {
        bad("image_url", format!("not a valid image reference: {e}"));
    }
    if !RUNTIME_TYPES.contains(&t.language_runtime.as_str()) {
        bad("runtime_type", format!("must be one of {}", RUNTIME_TYPES.join(", ")));
    }
    if !(0.1..=4.0).contains(&t.default_cpu_cores) || !t.default_cpu_cores.is_finite() {
        bad("default_cpu_cores", "must be between 0.1 and 4".into());
    }
    if !(128..=8192).contains(&t.default_memory_mb) {
        bad("default_memory_mb", "must be between 128 and 8192".into());
    }
    if !(256..=51200).contains(&t.default_disk_mb) {
        bad("default_disk_mb", "must be between 256 and 51200".into());
    }
    if !(60..=3600).contains(&t.default_timeout_sec) {
        bad("default_timeout", "must be between 60 and 3600".into());
    }
    if let Err(e) = crate::service::sessions::validate_env(&t.default_env_vars, 128) {
        bad("default_env_vars", e);
    }
    if errors.is_empty() { Ok(()) } else { Err(ServiceError::Invalid(errors)) }
}

/// Fields of a template to set; `None` leaves a field as it is (or at its default, on create).
#[derive(Debug, Clone, Default)]
pub struct TemplateChanges {
    /// Display name.
    pub name: Option<String>,
    /// The container image.
    pub image_url: Option<String>,
    /// Default CPU cores.
    pub default_cpu_cores: Option<f64>,
    /// Default memory, MiB.
    pub default_memory_mb: Option<u32>,
    /// Default disk, MiB.
    pub default_disk_mb: Option<u32>,
    /// Default idle timeout, seconds.
    pub default_timeout_sec: Option<u32>,
    /// Environment variables every session gets.
    pub default_env_vars: Option<BTreeMap<String, String>>,
    /// Python packages the image ships.
    pub pre_installed_packages: Option<Vec<String>>,
    /// Whether new sessions may use it.
    pub is_active: Option<bool>,
}

impl TemplateChanges {
    fn apply(self, t: &mut Template) {
        macro_rules! set {
            ($($field:ident => $target:ident),*) => {$(if let Some(v) = self.$field { t.$target = v; })*};
        }
        set!(name => name, image_url => image_url, default_cpu_cores => default_cpu_cores,
             default_memory_mb => default_memory_mb, default_disk_mb => default_disk_mb,
             default_timeout_sec => default_timeout_sec, default_env_vars => default_env_vars,
             pre_installed_packages => pre_installed_packages, is_active => is_active);
    }
}

/// Templates.
pub struct Templates {
    settings: TemplateSettings,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::not_found("template_not_found", format!("template {id} does not exist"))
}

fn exists(id: &str) -> ServiceError {
    ServiceError::conflict("template_exists", format!("template {id} exists"))
}

/// How often a running pull's progress is written to the store.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Whether a session may use `t`: 409 `template_not_ready` while its image is pulled, 409
/// `template_pull_failed` (with the pull's error) when that failed.
pub fn check_ready(t: &Template) -> Result<()> {
    match t.status {
        TemplateStatus::Ready => Ok(()),
        TemplateStatus::Pulling => Err(ServiceError::conflict(
            "template_not_ready",
            format!(
                "template {}'s image {} is still being pulled; GET /api/v1/templates/{} shows its progress",
                t.id, t.image_url, t.id
            ),
        )),
        TemplateStatus::Failed => {
            let why = t
                .image_pull
                .as_ref()
                .and_then(|p| p.error.as_ref())
                .map_or_else(|| "unknown error".to_owned(), |e| format!("{}: {}", e.code, e.message));
            Err(ServiceError::conflict(
                "template_pull_failed",
                format!(
                    "template {}'s image {} could not be pulled ({why}); set its image_url to pull again",
                    t.id, t.image_url
                ),
            ))
        }
    }
}

impl Templates {
    /// The service.
    pub fn new(settings: TemplateSettings, store: Arc<dyn Store>, runtime: Arc<dyn Runtime>) -> Self {
        Templates { settings, store, runtime }
    }

    /// Sets `t`'s status for its image: `ready` when the runtime has it, `pulling` when the
    /// runtime may pull it (the caller then starts [`Templates::start_pull`]); refuses it with 422
    /// `template_image_missing` otherwise, so a template cannot promise sessions that will
    /// never start.
    async fn check_image(&self, t: &mut Template) -> Result<()> {
        let available = self
            .runtime
            .image_available(&t.image_url)
            .await
            .map_err(|e| ServiceError::unavailable("runtime_unavailable", e.to_string(), 5))?;
        if available {
            t.status = TemplateStatus::Ready;
            t.image_pull = None;
            return Ok(());
        }
        if self.settings.pull_images && self.runtime.pulls_images() {
            t.status = TemplateStatus::Pulling;
            t.image_pull = Some(ImagePull { started_at: Some(Utc::now()), ..ImagePull::default() });
            return Ok(());
        }
        let image = &t.image_url;
        Err(ServiceError::refused(
            "template_image_missing",
            format!(
                "image {image} is not available to the runtime and pulling images is off \
                 (templates.pull_images); build it (images/build.sh) or pull it first"
            ),
            Some(FieldError::new("image_url", "the runtime does not have this image")),
        ))
    }

    /// Starts pulling `t`'s image in the background when `t` is `pulling`.
    fn start_pull(&self, t: &Template) {
        if t.status != TemplateStatus::Pulling {
            return;
        }
        let pull = Pull {
            timeout: Duration::from_secs(self.settings.pull_timeout_sec),
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            id: t.id.clone(),
            image: t.image_url.clone(),
            record: t.image_pull.clone().unwrap_or_default(),
        };
        tokio::spawn(pull.run());
    }

    /// Starts again the pulls a previous process left unfinished (at start-up), so no template
    /// stays `pulling` for ever. Returns how many.
    pub async fn resume_pulls(&self) -> Result<usize> {
        let mut resumed = 0;
        for t in self.store.list_templates(u32::MAX, 0).await?.items {
            if t.status == TemplateStatus::Pulling {
                tracing::info!(template = %t.id, image = %t.image_url, "pulling the image again after a restart");
                self.start_pull(&t);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// A new template (admins only): 409 `template_exists` when the id is taken. A template
    /// whose image is being pulled comes back `pulling`.
    pub async fn create(
        &self,
        caller: &Caller,
        id: String,
        language_runtime: String,
        changes: TemplateChanges,
    ) -> Result<Template> {
        caller.require_admin()?;
        let now = Utc::now();
        let mut t = Template {
            id,
            name: String::new(),
            image_url: String::new(),
            language_runtime,
            default_cpu_cores: 0.5,
            default_memory_mb: 512,
            default_disk_mb: 1024,
            default_timeout_sec: 300,
            default_env_vars: BTreeMap::new(),
            pre_installed_packages: Vec::new(),
            is_active: true,
            status: TemplateStatus::Ready,
            image_pull: None,
            created_at: now,
            updated_at: now,
        };
        changes.apply(&mut t);
        validate(&t)?;
        if self.store.template(&t.id).await?.is_some() {
            return Err(exists(&t.id));
        }
        self.check_image(&mut t).await?;
        match self.store.insert_template(&t).await {
            Err(sandbox_store::StoreError::Conflict(_)) => Err(exists(&t.id)),
            Err(e) => Err(e.into()),
            Ok(()) => {
                self.start_pull(&t);
                Ok(t)
            }
        }
    }

    /// A page of templates, by id.
    pub async fn list(&self, limit: u32, offset: u64) -> Result<Page<Template>> {
        Ok(self.store.list_templates(limit, offset).await?)
    }

    /// One template.
    pub async fn get(&self, id: &str) -> Result<Template> {
        self.store.template(id).await?.ok_or_else(|| not_found(id))
    }

    /// The language runtime of template `id` (empty when the template is gone).
    pub async fn language_runtime(&self, id: &str) -> Result<String> {
        Ok(self.store.template(id).await?.map(|t| t.language_runtime).unwrap_or_default())
    }

    /// Changes a template (admins only); sessions already made keep what they got. An
    /// `image_url` that changes, or is given again for a template that is not `ready`, is
    /// checked (and pulled) as on create.
    pub async fn update(&self, caller: &Caller, id: &str, changes: TemplateChanges) -> Result<Template> {
        caller.require_admin()?;
        let mut t = self.get(id).await?;
        let recheck = changes
            .image_url
            .as_ref()
            .is_some_and(|image| *image != t.image_url || t.status != TemplateStatus::Ready);
        changes.apply(&mut t);
        t.updated_at = Utc::now();
        validate(&t)?;
        if recheck {
            self.check_image(&mut t).await?;
        }
        if !self.store.update_template(&t).await? {
            return Err(not_found(id));
        }
        if recheck {
            self.store.set_template_image(&t.id, &t.image_url, t.status, t.image_pull.as_ref()).await?;
            self.start_pull(&t);
        }
        Ok(t)
    }

    /// Deletes a template (admins only); refused while live sessions use it.
    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        caller.require_admin()?;
        self.get(id).await?;
        let live = self.store.count_live_sessions_of_template(id).await?;
        if live > 0 {
            return Err(ServiceError::conflict(
                "template_in_use",
                format!("{live} sessions still use template {id}"),
            ));
        }
        if !self.store.delete_template(id).await? {
            return Err(not_found(id));
        }
        Ok(())
    }
}

/// One image pull in the background: its progress written to the store every
/// [`PROGRESS_EVERY`], its end as the template's status.
struct Pull {
    timeout: Duration,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    id: String,
    image: String,
    record: ImagePull,
}

impl Pull {
    async fn run(mut self) {
        let (tx, mut rx) = tokio::sync::watch::channel(PullProgress::default());
        let mut written = tokio::time::Instant::now();
        let pulled = {
            let (runtime, image) = (self.runtime.clone(), self.image.clone());
            let pull = tokio::time::timeout(self.timeout, runtime.pull_image(&image, &tx));
            tokio::pin!(pull);
            loop {
                tokio::select! {
                    done = &mut pull => break done.unwrap_or_else(|_| Err(RuntimeError::PullFailed {
                        code: "pull_timed_out",
                        message: format!("the pull took longer than {}s (templates.pull_timeout_sec)", self.timeout.as_secs()),
                    })),
                    Ok(()) = rx.changed() => {
                        if written.elapsed() < PROGRESS_EVERY {
                            continue;
                        }
                        written = tokio::time::Instant::now();
                        self.take(*rx.borrow_and_update());
                        if !self.write(TemplateStatus::Pulling).await {
                            // The template is gone or names another image now; nobody waits
                            // for this pull any more.
                            return;
                        }
                    }
                }
            }
        };
        self.take(*rx.borrow());
        self.record.finished_at = Some(Utc::now());
        let status = match pulled {
            Ok(()) => {
                tracing::info!(template = %self.id, image = %self.image, "template image pulled");
                TemplateStatus::Ready
            }
            Err(e) => {
                tracing::warn!(template = %self.id, image = %self.image, error = %e, "pulling a template's image failed");
                let (code, message) = match e {
                    RuntimeError::PullFailed { code, message } => (code.to_owned(), message),
                    other => ("pull_failed".to_owned(), other.to_string()),
                };
                self.record.error = Some(PullError { code, message });
                TemplateStatus::Failed
            }
        };
        self.write(status).await;
    }

    fn take(&mut self, p: PullProgress) {
        self.record.bytes_done = p.bytes_done;
        self.record.bytes_total = p.bytes_total;
        self.record.layers_done = p.layers_done;
        self.record.layers_total = p.layers_total;
    }

    /// Writes the record with `status`; `false` when the template no longer names the image.
    async fn write(&self, status: TemplateStatus) -> bool {
        match self.store.set_template_image(&self.id, &self.image, status, Some(&self.record)).await {
            Ok(named) => named,
            Err(e) => {
                tracing::warn!(template = %self.id, error = %e, "recording an image pull failed");
                true
            }
        }
    }
}
