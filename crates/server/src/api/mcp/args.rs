//! The arguments of the MCP tools, with the JSON Schemas (and field docs) a model reads.

use sandbox_core::Language;
use sandbox_core::model::DependencySpec;
use schemars::JsonSchema;
use serde::Deserialize;

/// A language code runs in.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CodeLanguage {
    /// Python 3 (IPython-like: the last expression's value is returned).
    Python,
    /// Node.js (templates that have it, such as `multi-language`).
    Javascript,
    /// Bash.
    Shell,
}

impl From<CodeLanguage> for Language {
    fn from(l: CodeLanguage) -> Self {
        match l {
            CodeLanguage::Python => Language::Python,
            CodeLanguage::Javascript => Language::Javascript,
            CodeLanguage::Shell => Language::Shell,
        }
    }
}

/// `create_session`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateSessionArgs {
    /// The template (sandbox image) to start, from `list_templates`: `python-basic` (the
    /// default), `multi-language` (Python, JavaScript, shell) or `python-datascience` (numpy,
    /// pandas, matplotlib, scipy), or one your deployment added.
    #[serde(default)]
    pub template: Option<String>,
    /// Python packages to install before the session is handed over, as pip requirements
    /// (`requests`, `httpx==0.27.0`, `rich>=13`). Installing takes a while; prefer a template that
    /// ships what you need.
    #[serde(default)]
    pub python_packages: Vec<String>,
    /// Seconds without activity after which the session is ended (the template's default
    /// otherwise).
    #[serde(default)]
    pub idle_timeout: Option<u32>,
}

/// `run_code`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunCodeArgs {
    /// The session to run in (from `create_session`).
    pub session_id: String,
    /// The code: a notebook cell (Python, JavaScript) or a script (shell).
    pub code: String,
    /// Its language (default `python`). Leave it out when giving `context_id`.
    #[serde(default)]
    pub language: Option<CodeLanguage>,
    /// A context from `create_context` to run in. Without it the code runs in the session's
    /// default context of its language, which keeps variables between calls too.
    #[serde(default)]
    pub context_id: Option<String>,
    /// Seconds the code may run before it is stopped (default 60).
    #[serde(default)]
    pub timeout: Option<u32>,
}

/// `create_context`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateContextArgs {
    /// The session to start the interpreter in.
    pub session_id: String,
    /// Its language.
    pub language: CodeLanguage,
    /// The directory it starts in, relative to the workspace (default: the workspace).
    #[serde(default)]
    pub cwd: Option<String>,
}

/// The tools that name only a session.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SessionArgs {
    /// The session.
    pub session_id: String,
}

/// `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListFilesArgs {
    /// The session.
    pub session_id: String,
    /// The directory to list, relative to the workspace (default: the whole workspace).
    #[serde(default)]
    pub path: Option<String>,
}

/// `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadFileArgs {
    /// The session.
    pub session_id: String,
    /// The file, relative to the workspace (`data/out.csv`) or absolute under `/workspace`.
    pub path: String,
}

/// How `write_file`'s content is given.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text, written as is.
    #[default]
    Text,
    /// Base64 of the bytes (for binary files).
    Base64,
}

/// `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteFileArgs {
    /// The session.
    pub session_id: String,
    /// The file, relative to the workspace; missing directories are created, a file there is
    /// replaced.
    pub path: String,
    /// The content.
    pub content: String,
    /// `text` (default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// `install_packages`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InstallPackagesArgs {
    /// The session.
    pub session_id: String,
    /// pip requirements (`requests`, `httpx==0.27.0`, `rich>=13`), 1 to 50.
    pub packages: Vec<String>,
}

/// A pip requirement (`name`, `name==1.0`, `name>=1,<2`) as a package and its constraint.
pub fn requirement(raw: &str) -> DependencySpec {
    let raw = raw.trim();
    let split = raw.find(['=', '<', '>', '!', '~', ' ']).unwrap_or(raw.len());
    let (name, version) = raw.split_at(split);
    let version = version.trim();
    DependencySpec { name: name.to_owned(), version: (!version.is_empty()).then(|| version.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_split_at_the_constraint() {
        let r = requirement(" httpx==0.27.0 ");
        assert_eq!((r.name.as_str(), r.version.as_deref()), ("httpx", Some("==0.27.0")));
        let r = requirement("rich >=13,<14");
        assert_eq!((r.name.as_str(), r.version.as_deref()), ("rich", Some(">=13,<14")));
        let r = requirement("requests");
        assert_eq!((r.name.as_str(), r.version), ("requests", None));
    }
}
