//! Object keys: `{prefix}{session}/{path}`, with session ids and prefixes checked so no key escapes.
//!
//! Each component of a workspace path becomes one key segment, percent-encoding the few bytes
//! object stores advise against (`%`, `\`, `#`, control characters...); listing decodes them
//! back, so any [`WorkspacePath`] round-trips.

use crate::error::StorageError;
use object_store::path::{Path, PathPart};
use percent_encoding::percent_decode_str;
use sandbox_core::workspace_path::WorkspacePath;

/// The longest session id accepted.
pub const MAX_SESSION_LEN: usize = sandbox_protocol::contract::MAX_ID_LEN;

/// Checks that `session` is a session id of the container contract: 1 to 64 characters of
/// `[A-Za-z0-9_-]`.
pub fn validate_session(session: &str) -> Result<(), StorageError> {
    if sandbox_protocol::contract::valid_id(session) {
        Ok(())
    } else {
        Err(StorageError::InvalidSession(format!(
            "session id must be 1-{MAX_SESSION_LEN} characters of [A-Za-z0-9_-], got {:?}",
            truncate(session)
        )))
    }
}

/// Checks that keys built on `prefix` are exactly `{prefix}{session}/...`, unnormalised.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    let probe = format!("{prefix}s");
    match Path::parse(&probe) {
        Ok(path) if path.as_ref() == probe => Ok(()),
        _ => Err(StorageError::InvalidConfig(format!(
            "prefix {prefix:?} must be empty or a relative key prefix without empty, `.` or `..` \
             segments or control characters (e.g. `sessions/`)"
        ))),
    }
}

/// The key of a session's "directory": everything of the session is strictly below it.
///
/// Listing under it matches `{prefix}{session}/` only, so `sess_1` never sees `sess_10`.
pub(crate) fn session_root(prefix: &str, session: &str) -> Result<Path, StorageError> {
    validate_session(session)?;
    // The prefix was validated at connect time and the session id is plain ASCII, so this is
    // a well-formed path; `parse` still checks rather than trusts.
    Path::parse(format!("{prefix}{session}"))
        .map_err(|e| StorageError::InvalidConfig(format!("cannot build a key for session {session}: {e}")))
}

/// The key of `path` in a session; the workspace root itself is not a file.
pub(crate) fn file_key(root: &Path, path: &WorkspacePath) -> Result<Path, StorageError> {
    if path.is_root() {
        return Err(StorageError::InvalidPath("the workspace root is not a file".to_owned()));
    }
    Ok(path.components().fold(root.clone(), |key, component| key.join(PathPart::from(component))))
}

/// The workspace path of `key`, listed under `root`; `None` if it is not a valid one.
pub(crate) fn workspace_path(root: &Path, key: &Path) -> Option<WorkspacePath> {
    let mut components = Vec::new();
    for part in key.prefix_match(root)? {
        let component = percent_decode_str(part.as_ref()).decode_utf8().ok()?;
        // A key this crate did not write (an encoded `/`, an empty or dot component) could
        // alias another file: refuse it.
        if matches!(component.as_ref(), "" | "." | "..") || component.contains(['/', '\0']) {
            return None;
        }
        components.push(component.into_owned());
    }
    WorkspacePath::parse_non_root(&components.join("/")).ok()
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_SESSION_LEN + 8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_validated() {
        for ok in ["s", "sess_1", "A-b_9", &"x".repeat(64)] {
            assert!(validate_session(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a b", "sess.1", "é", &"x".repeat(65), "a\0", "*"] {
            let err = validate_session(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_session", "{bad:?}");
        }
    }

    #[test]
    fn keys_nest_under_the_session_with_a_separator() {
        let root = session_root("sessions/", "sess_1").unwrap();
        assert_eq!(root.as_ref(), "sessions/sess_1");
        let key = file_key(&root, &WorkspacePath::parse("dir/a.txt").unwrap()).unwrap();
        assert_eq!(key.as_ref(), "sessions/sess_1/dir/a.txt");
        // `sess_10`'s keys are not below `sess_1`'s root.
        let other = session_root("sessions/", "sess_10").unwrap();
        let other_key = file_key(&other, &WorkspacePath::parse("a").unwrap()).unwrap();
        assert!(workspace_path(&root, &other_key).is_none());
        assert!(!other_key.prefix_matches(&root));
        assert_eq!(session_root("", "s").unwrap().as_ref(), "s");
        assert_eq!(session_root("ws-", "s").unwrap().as_ref(), "ws-s");
        assert_eq!(file_key(&root, &WorkspacePath::root()).unwrap_err().code(), "invalid_path");
    }

    #[test]
    fn odd_names_round_trip() {
        let root = session_root("p/", "s").unwrap();
        for raw in ["100%/a%25b", "x\\y", "new\nline", "sp ace/ünï/#?*", "..a/b..", "%2F"] {
            let path = WorkspacePath::parse(raw).unwrap();
            let key = file_key(&root, &path).unwrap();
            assert_eq!(key.parts_count(), root.parts_count() + path.components().count(), "{raw:?}");
            assert_eq!(workspace_path(&root, &key), Some(path), "{raw:?} -> {key}");
        }
    }

    #[test]
    fn foreign_keys_are_refused() {
        let root = session_root("p/", "s").unwrap();
        // Written by something else: an encoded `/` or a `.` component would alias other paths.
        for raw in ["p/s/a%2Fb", "p/s/%2E", "p/s/bad%FF"] {
            let key = Path::parse(raw).unwrap();
            assert_eq!(workspace_path(&root, &key), None, "{raw}");
        }
        assert_eq!(workspace_path(&root, &root), None);
    }

    #[test]
    fn prefixes_are_validated() {
        for ok in ["", "sessions/", "a/b/", "ws-"] {
            assert!(validate_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in ["/x/", "a//", "./", "a/../", "x\n/"] {
            assert_eq!(validate_prefix(bad).unwrap_err().code(), "invalid_config", "{bad:?}");
        }
    }
}
