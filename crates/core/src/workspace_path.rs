//! Validated paths relative to a workspace root.
//!
//! A [`WorkspacePath`] can only name something *below* the workspace: it is relative, has no
//! `..` component, no NUL byte and no over-long name. Resolving it safely against the real
//! filesystem (so a symlink cannot lead out) is the executor's job; this type makes sure the
//! request itself is well-formed before anything touches a disk.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The longest single file name accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_NAME_BYTES: usize = 255;
/// The longest whole path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path starts with `/`.
    #[error("path must be relative to the workspace, not absolute")]
    Absolute,
    /// The path has a `..` component.
    #[error("path must not contain '..'")]
    ParentComponent,
    /// The path contains a NUL byte.
    #[error("path must not contain a NUL byte")]
    NulByte,
    /// One component is longer than [`MAX_NAME_BYTES`].
    #[error("a path component is longer than {MAX_NAME_BYTES} bytes")]
    NameTooLong,
    /// The whole path is longer than [`MAX_PATH_BYTES`].
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong,
    /// The path names the workspace root where a file is required.
    #[error("path must name a file or directory inside the workspace, not the workspace itself")]
    Root,
}

/// A normalised, validated path below a workspace root (`""` is the root itself).
///
/// Normalisation drops empty and `.` components, so `./a//b/` becomes `a/b`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WorkspacePath(String);

impl WorkspacePath {
    /// Validates and normalises `raw`.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::PathTooLong);
        }
        if raw.contains('\0') {
            return Err(PathError::NulByte);
        }
        if raw.starts_with('/') {
            return Err(PathError::Absolute);
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in raw.split('/') {
            match part {
                "" | "." => continue,
                ".." => return Err(PathError::ParentComponent),
                p if p.len() > MAX_NAME_BYTES => return Err(PathError::NameTooLong),
                p => parts.push(p),
            }
        }
        Ok(WorkspacePath(parts.join("/")))
    }

    /// Like [`parse`](Self::parse), but refuses the workspace root.
    pub fn parse_non_root(raw: &str) -> Result<Self, PathError> {
        let p = Self::parse(raw)?;
        if p.is_root() {
            return Err(PathError::Root);
        }
        Ok(p)
    }

    /// The workspace root.
    pub fn root() -> Self {
        WorkspacePath(String::new())
    }

    /// Whether this is the workspace root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The normalised path, `""` for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The parent directory and the final name; `None` for the root.
    pub fn split_last(&self) -> Option<(WorkspacePath, &str)> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((parent, name)) => (WorkspacePath(parent.to_owned()), name),
            None => (WorkspacePath::root(), self.0.as_str()),
        })
    }

    /// This path with `name` appended (`name` must be a single valid component).
    pub fn join(&self, name: &str) -> Result<WorkspacePath, PathError> {
        if name.contains('/') || name == "." || name.is_empty() {
            return Err(PathError::ParentComponent);
        }
        let joined = if self.is_root() { name.to_owned() } else { format!("{}/{}", self.0, name) };
        WorkspacePath::parse(&joined)
    }
}

impl fmt::Display for WorkspacePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for WorkspacePath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkspacePath::parse(s)
    }
}

impl TryFrom<String> for WorkspacePath {
    type Error = PathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        WorkspacePath::parse(&s)
    }
}

impl From<WorkspacePath> for String {
    fn from(p: WorkspacePath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises() {
        assert_eq!(WorkspacePath::parse("./a//b/").unwrap().as_str(), "a/b");
        assert_eq!(WorkspacePath::parse("").unwrap(), WorkspacePath::root());
        assert_eq!(WorkspacePath::parse(".").unwrap(), WorkspacePath::root());
        assert_eq!(WorkspacePath::parse("a/./b").unwrap().as_str(), "a/b");
        assert_eq!(WorkspacePath::parse("..a/b..").unwrap().as_str(), "..a/b..");
    }

    #[test]
    fn refuses_bad_paths() {
        assert_eq!(WorkspacePath::parse("/etc/passwd"), Err(PathError::Absolute));
        assert_eq!(WorkspacePath::parse("a/../../x"), Err(PathError::ParentComponent));
        assert_eq!(WorkspacePath::parse(".."), Err(PathError::ParentComponent));
        assert_eq!(WorkspacePath::parse("a\0b"), Err(PathError::NulByte));
        assert_eq!(WorkspacePath::parse(&"x".repeat(256)), Err(PathError::NameTooLong));
        assert_eq!(WorkspacePath::parse(&"a/".repeat(2100)), Err(PathError::PathTooLong));
        assert_eq!(WorkspacePath::parse_non_root("./"), Err(PathError::Root));
        assert!(WorkspacePath::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn split_and_join() {
        let p = WorkspacePath::parse("a/b/c.txt").unwrap();
        let (parent, name) = p.split_last().unwrap();
        assert_eq!((parent.as_str(), name), ("a/b", "c.txt"));
        assert_eq!(parent.join(name).unwrap(), p);
        assert_eq!(WorkspacePath::root().join("x").unwrap().as_str(), "x");
        assert!(WorkspacePath::root().join("..").is_err());
        assert!(WorkspacePath::root().join("a/b").is_err());
        assert!(WorkspacePath::root().split_last().is_none());
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<WorkspacePath>("\"../x\"").is_err());
        let p: WorkspacePath = serde_json::from_str("\"a//b\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"a/b\"");
    }

    proptest! {
        /// Whatever the input, an accepted path never escapes: no component is `..`, `.` or
        /// empty, it is not absolute, and it has no NUL byte.
        #[test]
        fn accepted_paths_stay_inside(raw in "[a-z./\\x00]{0,40}") {
            if let Ok(p) = WorkspacePath::parse(&raw) {
                prop_assert!(!p.as_str().starts_with('/'));
                prop_assert!(!p.as_str().contains('\0'));
                for c in p.as_str().split('/').filter(|_| !p.is_root()) {
                    prop_assert!(c != ".." && c != "." && !c.is_empty());
                }
                // Normalising twice changes nothing.
                prop_assert_eq!(WorkspacePath::parse(p.as_str()).unwrap(), p);
            } else {
                prop_assert!(raw.starts_with('/') || raw.contains('\0')
                    || raw.split('/').any(|c| c == ".."));
            }
        }

        /// Any path with a `..` component is refused wherever the component sits.
        #[test]
        fn dotdot_anywhere_is_refused(a in "[a-z]{1,8}", b in "[a-z]{0,8}") {
            let raw = format!("{a}/../{b}");
            prop_assert_eq!(WorkspacePath::parse(&raw), Err(PathError::ParentComponent));
        }
    }
}
