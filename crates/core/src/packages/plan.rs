//! Planning an install: a session's package requests checked (names, versions, duplicates,
//! the index, conflicts with what the template ships) and turned into pip's requirements.

use super::index::{IndexAllowList, redact_index_url, validate_index_url};
use super::{Pin, Requirement, RequirementError, TemplateFit, merge, pip_requirements, template_fit};
use crate::model::{DependencySpec, InstalledDependency, Template};
use chrono::{DateTime, Utc};

/// Most packages one request may name.
pub const MAX_PACKAGES: usize = 50;
/// Where the template's own packages are reported to live.
const TEMPLATE_LOCATION: &str = "template image";

/// Why an install was not planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Fields of the request are invalid: `(field, message)` for each.
    Invalid(Vec<(String, String)>),
    /// The index (shown without its password) is not one the operator allows.
    IndexNotAllowed(String),
}

/// The template's packages as a session reports them.
pub fn template_packages(template: &Template, at: DateTime<Utc>) -> Vec<InstalledDependency> {
    template_pins(template)
        .into_iter()
        .map(|p| InstalledDependency {
            name: p.name,
            version: p.version.to_string(),
            install_location: TEMPLATE_LOCATION.into(),
            install_time: at,
            is_from_template: true,
        })
        .collect()
}

fn template_pins(template: &Template) -> Vec<Pin> {
    template.pre_installed_packages.iter().filter_map(|p| p.parse().ok()).collect()
}

/// A validated install: what the session will have asked for once it succeeds, and what pip
/// is told to install for that.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The session's requests after this install (earlier ones with these merged in).
    pub wanted: Vec<DependencySpec>,
    /// pip's requirement arguments; empty when the template already has everything.
    pub pip: Vec<String>,
    /// The index.
    pub index_url: String,
}

/// Validates an install of `new` into a session that asked for and got `before` (422 naming
/// each bad field, prefixed with `field`): the index URL and whether it is allowed (422
/// `index_not_allowed`, before anything else), names, versions, duplicates, and conflicts with
/// the template's packages unless `allow_conflicts`.
pub fn plan(
    field: &str,
    template: &Template,
    before: (&[DependencySpec], &[InstalledDependency]),
    new: &[DependencySpec],
    index: (&str, &IndexAllowList),
    allow_conflicts: bool,
) -> Result<Plan, PlanError> {
    let (index_url, allowed) = index;
    if let Ok(url) = validate_index_url(index_url)
        && !allowed.allows(&url)
    {
        return Err(PlanError::IndexNotAllowed(redact_index_url(index_url)));
    }
    let mut errors = Vec::new();
    let mut bad = |f: String, message: String| errors.push((f, message));
    if new.len() > MAX_PACKAGES {
        bad(field.into(), format!("at most {MAX_PACKAGES} packages per request"));
    }
    let pins = template_pins(template);
    let mut parsed: Vec<Requirement> = Vec::new();
    for (i, d) in new.iter().enumerate() {
        match Requirement::parse(&d.name, d.version.as_deref()) {
            Err(e @ RequirementError::InvalidName(_)) => bad(format!("{field}.{i}.name"), e.to_string()),
            Err(e) => bad(format!("{field}.{i}.version"), e.to_string()),
            Ok(r) if parsed.iter().any(|p| p.key() == r.key()) => {
                bad(format!("{field}.{i}.name"), format!("{} is listed twice", r.name()))
            }
            Ok(r) => {
                if let TemplateFit::Conflicts(v) = template_fit(&r, &pins)
                    && !allow_conflicts
                {
                    bad(
                        format!("{field}.{i}.version"),
                        format!(
                            "the template ships {} {v}, which {} excludes; set allow_version_conflicts to install another version over it",
                            r.name(),
                            r.spec().version.unwrap_or_default()
                        ),
                    );
                }
                parsed.push(r);
            }
        }
    }
    if let Err(e) = validate_index_url(index_url) {
        bad("python_package_index_url".into(), e);
    }
    if !errors.is_empty() {
        return Err(PlanError::Invalid(errors));
    }
    // Earlier requests were validated when made.
    let (requested, installed) = before;
    let before: Vec<Requirement> =
        requested.iter().filter_map(|d| Requirement::parse(&d.name, d.version.as_deref()).ok()).collect();
    let wanted = merge(&before, &parsed);
    Ok(Plan {
        pip: pip_requirements(&wanted, &parsed, installed, &pins),
        wanted: wanted.iter().map(Requirement::spec).collect(),
        index_url: index_url.to_owned(),
    })
}
