//! Python package requirements: names and version specifiers as PEP 508 and PEP 440 define
//! them, how a session's requests merge with new ones, and how they meet the packages its
//! template already ships.

pub mod index;
pub mod plan;

use crate::model::{DependencySpec, InstalledDependency};
use pep440_rs::{Version, VersionSpecifiers};
use std::fmt;
use std::str::FromStr;

/// Longest package name accepted (the Python control plane's limit).
pub const MAX_NAME_LEN: usize = 100;
/// Longest version constraint accepted.
pub const MAX_VERSION_LEN: usize = 200;

/// Why a requested package cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// Not a PEP 508 name (with optional `[extras]`).
    #[error(
        "{0:?} is not a valid package name (letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 100 characters, optionally with [extras])"
    )]
    InvalidName(String),
    /// Not a PEP 440 version constraint.
    #[error(
        "{version:?} is not a valid version constraint for {name} (examples: ==2.31.0, >=1.0,<2, ~=1.4): {reason}"
    )]
    InvalidVersion {
        /// The package.
        name: String,
        /// The constraint given.
        version: String,
        /// What the parser said.
        reason: String,
    },
}

/// A validated request for a package: `name[extras]` with optional version specifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    name: String,
    key: String,
    extras: Vec<String>,
    specifiers: Option<VersionSpecifiers>,
}

/// A package name in PEP 503 normal form: lowercase, each run of `-`, `_` and `.` one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
            continue;
        }
        if separator && !out.is_empty() {
            out.push('-');
        }
        separator = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn valid_name(name: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
}

impl Requirement {
    /// Validates a package as the API receives it. A bare version (`2.31.0`) means `==2.31.0`;
    /// an empty one means any version. URLs, environment markers and anything else pip would
    /// read as an option are refused.
    pub fn parse(name: &str, version: Option<&str>) -> Result<Self, RequirementError> {
        let invalid_name = || RequirementError::InvalidName(name.to_owned());
        let (base, extras) = match name.split_once('[') {
            None => (name, Vec::new()),
            Some((base, rest)) => {
                let list = rest.strip_suffix(']').ok_or_else(invalid_name)?;
                let extras: Vec<String> = list.split(',').map(|e| e.trim().to_owned()).collect();
                if !extras.iter().all(|e| valid_name(e)) {
                    return Err(invalid_name());
                }
                (base, extras)
            }
        };
        if !valid_name(base) {
            return Err(invalid_name());
        }
        let specifiers = match version.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => {
                let bad = |reason: String| RequirementError::InvalidVersion {
                    name: base.to_owned(),
                    version: v.to_owned(),
                    reason,
                };
                if v.len() > MAX_VERSION_LEN {
                    return Err(bad(format!("longer than {MAX_VERSION_LEN} characters")));
                }
                let text =
                    if v.starts_with(|c: char| c.is_ascii_digit()) { format!("=={v}") } else { v.to_owned() };
                let parsed = VersionSpecifiers::from_str(&text).map_err(|e| bad(e.to_string()))?;
                if parsed.is_empty() {
                    return Err(bad("no constraint".into()));
                }
                Some(parsed)
            }
        };
        Ok(Requirement { name: base.to_owned(), key: normalize(base), extras, specifiers })
    }

    /// The name as given (without extras).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The normalized name two requests for one package share.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether `version` meets the constraint (any version does without one).
    pub fn allows(&self, version: &Version) -> bool {
        self.specifiers.as_ref().is_none_or(|s| s.contains(version))
    }

    /// The request as the API states it.
    pub fn spec(&self) -> DependencySpec {
        let name = if self.extras.is_empty() {
            self.name.clone()
        } else {
            format!("{}[{}]", self.name, self.extras.join(","))
        };
        DependencySpec { name, version: self.specifiers.as_ref().map(ToString::to_string) }
    }
}

/// The argument pip gets: `name[extras]specifiers`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spec = self.spec();
        write!(f, "{}{}", spec.name, spec.version.unwrap_or_default().replace(' ', ""))
    }
}

/// A package at one exact version, as templates list them (`numpy==1.24.2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The name as written.
    pub name: String,
    /// The version.
    pub version: Version,
}

impl Pin {
    /// The normalized name.
    pub fn key(&self) -> String {
        normalize(&self.name)
    }
}

impl FromStr for Pin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, version) = s.split_once("==").ok_or_else(|| format!("{s:?} is not name==version"))?;
        let (name, version) = (name.trim(), version.trim());
        if !valid_name(name) {
            return Err(format!("{name:?} is not a valid package name"));
        }
        let version = Version::from_str(version).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Pin { name: name.to_owned(), version })
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=={}", self.name, self.version)
    }
}

/// `base` with each of `new` added, a new request replacing an earlier one for the same
/// package (compared by normalized name); order is kept, new packages go last.
pub fn merge(base: &[Requirement], new: &[Requirement]) -> Vec<Requirement> {
    let mut out: Vec<Requirement> =
        base.iter().filter(|b| !new.iter().any(|n| n.key == b.key)).cloned().collect();
    for n in new {
        if let Some(i) = out.iter().position(|o| o.key == n.key) {
            out.remove(i);
        }
        out.push(n.clone());
    }
    out
}

/// How a requested package meets the template's packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateFit {
    /// The template does not ship it.
    Absent,
    /// The template ships a version the request accepts: nothing to install.
    Satisfied(Version),
    /// The template ships a version the request refuses.
    Conflicts(Version),
}

/// How `req` meets `template` (the template's pinned packages).
pub fn template_fit(req: &Requirement, template: &[Pin]) -> TemplateFit {
    match template.iter().find(|p| p.key() == req.key) {
        None => TemplateFit::Absent,
        Some(p) if req.allows(&p.version) && req.extras.is_empty() => {
            TemplateFit::Satisfied(p.version.clone())
        }
        Some(p) if req.allows(&p.version) => TemplateFit::Absent,
        Some(p) => TemplateFit::Conflicts(p.version.clone()),
    }
}

/// What pip should install so that the session has `wanted` while what it already has stays
/// as it is: a package installed before and not asked for again is pinned to the version it
/// got; new and changed requests go as asked. Requests the template satisfies are left out.
pub fn pip_requirements(
    wanted: &[Requirement],
    new: &[Requirement],
    installed: &[InstalledDependency],
    template: &[Pin],
) -> Vec<String> {
    wanted
        .iter()
        .filter(|r| !matches!(template_fit(r, template), TemplateFit::Satisfied(_)))
        .map(|r| {
            let before = installed.iter().find(|i| !i.is_from_template && normalize(&i.name) == r.key);
            match before {
                Some(i) if !new.iter().any(|n| n.key == r.key) && r.extras.is_empty() => {
                    format!("{}=={}", r.name, i.version)
                }
                _ => r.to_string(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, version: Option<&str>) -> Requirement {
        Requirement::parse(name, version).unwrap()
    }

    fn pins(list: &[&str]) -> Vec<Pin> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn names_are_normalized_as_pep_503_says() {
        for (given, key) in
            [("Requests", "requests"), ("zope.interface", "zope-interface"), ("a__b-.c", "a-b-c")]
        {
            assert_eq!(normalize(given), key);
        }
    }

    #[test]
    fn valid_requests_parse_and_print_for_pip() {
        assert_eq!(req("requests", Some("==2.31.0")).to_string(), "requests==2.31.0");
        assert_eq!(req("requests", Some("2.31.0")).to_string(), "requests==2.31.0");
        assert_eq!(req("numpy", Some(">= 1.20, < 2")).to_string(), "numpy>=1.20,<2");
        assert_eq!(req("requests[socks,security]", None).to_string(), "requests[socks,security]");
        assert_eq!(req("pkg", Some("  ")).to_string(), "pkg");
        assert_eq!(req("pkg", Some("~=1.4")).spec().version.as_deref(), Some("~=1.4"));
    }

    #[test]
    fn anything_pip_would_read_differently_is_refused() {
        for name in [
            "",
            "-r",
            "--index-url=x",
            "a b",
            "pkg;os_name=='nt'",
            "pkg @ https://x/y.whl",
            "a[",
            "a[b",
            "x/y",
            "é",
            ".a",
            "a-",
            &"a".repeat(101),
        ] {
            assert!(
                matches!(Requirement::parse(name, None), Err(RequirementError::InvalidName(_))),
                "{name:?}"
            );
        }
        for version in [
            "bogus",
            ">=1.0; python_version<'3'",
            "@ https://x",
            "==1.0 --pre",
            "=>1",
            &format!("=={}", "1".repeat(250)),
        ] {
            assert!(
                matches!(
                    Requirement::parse("pkg", Some(version)),
                    Err(RequirementError::InvalidVersion { .. })
                ),
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_new_request_replaces_the_earlier_one_for_the_same_package() {
        let base = [req("Requests", Some("==2.0")), req("six", None)];
        let merged = merge(&base, &[req("requests", Some("==2.31.0")), req("attrs", None)]);
        let names: Vec<String> = merged.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["six", "requests==2.31.0", "attrs"]);
    }

    #[test]
    fn template_packages_satisfy_or_conflict() {
        let t = pins(&["numpy==1.24.2", "pandas==1.5.3"]);
        let v = |s: &str| Version::from_str(s).unwrap();
        assert_eq!(template_fit(&req("NumPy", None), &t), TemplateFit::Satisfied(v("1.24.2")));
        assert_eq!(template_fit(&req("numpy", Some(">=1.20,<2")), &t), TemplateFit::Satisfied(v("1.24.2")));
        assert_eq!(template_fit(&req("numpy", Some("==2.0")), &t), TemplateFit::Conflicts(v("1.24.2")));
        assert_eq!(template_fit(&req("requests", None), &t), TemplateFit::Absent);
    }

    #[test]
    fn earlier_installs_are_pinned_and_template_packages_left_out() {
        let installed = |name: &str, version: &str, from_template: bool| InstalledDependency {
            name: name.into(),
            version: version.into(),
            install_location: String::new(),
            install_time: chrono::DateTime::UNIX_EPOCH,
            is_from_template: from_template,
        };
        let have = [installed("six", "1.16.0", false), installed("numpy", "1.24.2", true)];
        let template = pins(&["numpy==1.24.2"]);
        let new = [req("attrs", Some(">=23"))];
        let wanted = merge(&[req("six", None), req("numpy", None)], &new);
        assert_eq!(pip_requirements(&wanted, &new, &have, &template), ["six==1.16.0", "attrs>=23"]);
        // Asked again, a package is installed as now asked.
        let new = [req("six", Some(">=1.17"))];
        let wanted = merge(&wanted, &new);
        assert_eq!(pip_requirements(&wanted, &new, &have, &template), ["attrs>=23", "six>=1.17"]);
    }

    #[test]
    fn template_pins_parse() {
        assert_eq!(pins(&["numpy==1.24.2"])[0].to_string(), "numpy==1.24.2");
        for bad in ["numpy", "numpy>=1", "==1.0", "numpy==x.y"] {
            assert!(bad.parse::<Pin>().is_err(), "{bad}");
        }
    }
}
