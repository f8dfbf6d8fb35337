//! The languages a sandbox runs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A language user code can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Python 3 (`python3`).
    Python,
    /// JavaScript on Node.js (`node`).
    Javascript,
    /// A bash script (`bash`).
    Shell,
}

impl Language {
    /// Every supported language, in a stable order.
    pub const ALL: [Language; 3] = [Language::Python, Language::Javascript, Language::Shell];

    /// The name used on the wire and in the API (`python`, `javascript`, `shell`).
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Javascript => "javascript",
            Language::Shell => "shell",
        }
    }

    /// The language a template's runtime (`python3.11`, `nodejs20`) is the interpreter of, if
    /// one of these.
    pub fn of_runtime(runtime: &str) -> Option<Language> {
        if runtime.starts_with("python") {
            Some(Language::Python)
        } else if runtime.starts_with("node") {
            Some(Language::Javascript)
        } else {
            None
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a language name that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language {0:?}: expected one of python, javascript, shell")]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Language::ALL.into_iter().find(|l| l.as_str() == s).ok_or_else(|| UnknownLanguage(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for l in Language::ALL {
            assert_eq!(l.as_str().parse::<Language>().unwrap(), l);
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
        }
        assert!("ruby".parse::<Language>().is_err());
    }

    #[test]
    fn runtimes() {
        assert_eq!(Language::of_runtime("python3.11"), Some(Language::Python));
        assert_eq!(Language::of_runtime("nodejs20"), Some(Language::Javascript));
        assert_eq!(Language::of_runtime("go1.21"), None);
    }
}
