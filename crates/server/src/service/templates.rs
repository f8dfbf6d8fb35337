//! The templates every new installation starts with, and template validation.

use crate::error::{ApiError, FieldError};
use chrono::Utc;
use sandbox_core::model::Template;
use sandbox_store::Store;
use std::collections::BTreeMap;

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

/// The image a built-in template uses.
pub fn image_of(template_id: &str) -> String {
    format!("sandbox/{template_id}:latest")
}

/// Stores the built-in templates that are missing (existing ones are left as they are).
pub async fn seed(store: &dyn Store) -> Result<(), ApiError> {
    for (id, name, runtime, packages) in BUILT_IN {
        if store.template(id).await?.is_some() {
            continue;
        }
        let now = Utc::now();
        let t = Template {
            id: (*id).into(),
            name: (*name).into(),
            image_url: image_of(id),
            runtime_type: (*runtime).into(),
            default_cpu_cores: 1.0,
            default_memory_mb: 512,
            default_disk_mb: 1024,
            default_timeout_sec: 300,
            default_env_vars: BTreeMap::new(),
            pre_installed_packages: packages.iter().map(|p| (*p).to_owned()).collect(),
            is_active: true,
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
pub fn validate(t: &Template) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, message: String| errors.push(FieldError { field: field.into(), message });
    if !crate::ids::valid_client_id(&t.id) {
        bad("id", "must be 1-64 characters of letters, digits, '_' and '-'".into());
    }
    if t.name.trim().is_empty() || t.name.len() > 255 {
        bad("name", "must be 1-255 characters".into());
    }
    if t.image_url.trim().is_empty() || t.image_url.len() > 512 || t.image_url.contains(char::is_whitespace) {
        bad("image_url", "must be an image reference of 1-512 characters without spaces".into());
    }
    if !RUNTIME_TYPES.contains(&t.runtime_type.as_str()) {
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
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid_fields(errors)) }
}
