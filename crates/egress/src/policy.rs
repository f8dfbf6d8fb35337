//! A session's egress policy, the operator's bound on it, and the check made on session create.

use crate::destination::{Destination, ParseError};
use crate::pattern::Pattern;
use serde::{Deserialize, Serialize};

/// Most entries a session's allow-list may hold.
pub const MAX_ALLOW_ENTRIES: usize = 64;

/// Whether a session may open connections at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No egress: every attempt is denied (the default).
    #[default]
    None,
    /// Egress to the destinations the allow-list matches, within the operator's bound.
    Allowlist,
}

/// A session's network policy as a client asks for it: the `network` object of a session
/// create request, and the form a [`SessionPolicy`] is stored in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkRequest {
    /// `none` or `allowlist`.
    pub mode: Mode,
    /// `host:port` patterns (see [`crate::pattern`]); empty unless `mode` is `allowlist`.
    pub allow: Vec<String>,
}

/// Why a requested policy was refused. [`PolicyError::code`] gives the stable code the API
/// answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An allow-list entry is not a valid pattern.
    #[error("network.allow: {entry:?} is not a valid pattern: {source}")]
    InvalidPattern {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        source: ParseError,
    },
    /// Allow-list entries with `mode` other than `allowlist`.
    #[error("network.allow must be empty unless network.mode is \"allowlist\"")]
    AllowWithoutAllowlist,
    /// More entries than [`MAX_ALLOW_ENTRIES`].
    #[error("network.allow has {count} entries; at most {MAX_ALLOW_ENTRIES} are accepted")]
    TooManyEntries {
        /// How many were given.
        count: usize,
    },
    /// The operator permits no egress at all (`egress.permitted` is empty).
    #[error("network egress is disabled on this server")]
    EgressDisabled,
    /// An entry no operator pattern covers.
    #[error("network.allow: {entry:?} is not within what this server permits")]
    NotPermitted {
        /// The entry as given.
        entry: String,
    },
}

impl PolicyError {
    /// The stable error code: `invalid_egress_pattern`, `invalid_egress_policy` or
    /// `egress_not_permitted`.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::InvalidPattern { .. } => "invalid_egress_pattern",
            PolicyError::AllowWithoutAllowlist | PolicyError::TooManyEntries { .. } => {
                "invalid_egress_policy"
            }
            PolicyError::EgressDisabled | PolicyError::NotPermitted { .. } => "egress_not_permitted",
        }
    }
}

/// A session's policy, its patterns parsed. Stored and serialized as a [`NetworkRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NetworkRequest", into = "NetworkRequest")]
pub struct SessionPolicy {
    mode: Mode,
    allow: Vec<Pattern>,
}

impl SessionPolicy {
    /// No egress.
    pub fn none() -> SessionPolicy {
        SessionPolicy::default()
    }

    /// Reads a request's syntax, without the operator's bound: use [`Permitted::validate`] for a
    /// new session; this is for policies already validated once (read back from the store).
    pub fn parse(request: &NetworkRequest) -> Result<SessionPolicy, PolicyError> {
        if request.mode == Mode::None && !request.allow.is_empty() {
            return Err(PolicyError::AllowWithoutAllowlist);
        }
        if request.allow.len() > MAX_ALLOW_ENTRIES {
            return Err(PolicyError::TooManyEntries { count: request.allow.len() });
        }
        let allow = request
            .allow
            .iter()
            .map(|entry| {
                entry.parse().map_err(|source| PolicyError::InvalidPattern { entry: entry.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        Ok(SessionPolicy { mode: request.mode, allow })
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The allow-list.
    pub fn allow(&self) -> &[Pattern] {
        &self.allow
    }

    /// Whether the session's own list lets it reach `destination` (the operator's bound is
    /// checked separately, with [`Permitted::permits`]).
    pub fn allows(&self, destination: &Destination) -> bool {
        self.mode == Mode::Allowlist && self.allow.iter().any(|p| p.matches(destination))
    }
}

impl TryFrom<NetworkRequest> for SessionPolicy {
    type Error = PolicyError;

    fn try_from(request: NetworkRequest) -> Result<SessionPolicy, PolicyError> {
        SessionPolicy::parse(&request)
    }
}

impl From<SessionPolicy> for NetworkRequest {
    fn from(policy: SessionPolicy) -> NetworkRequest {
        NetworkRequest { mode: policy.mode, allow: policy.allow.iter().map(Pattern::to_string).collect() }
    }
}

/// The operator's bound (`egress.permitted`): every entry of every session's allow-list must lie
/// within one of these patterns. Empty: egress is disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permitted {
    patterns: Vec<Pattern>,
}

impl Permitted {
    /// The bound made of these patterns.
    pub fn new(patterns: Vec<Pattern>) -> Permitted {
        Permitted { patterns }
    }

    /// Whether egress is disabled (no pattern).
    pub fn is_disabled(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some operator pattern matches `destination`. The proxy checks this on every
    /// attempt too, so narrowing `egress.permitted` takes effect for running sessions.
    pub fn permits(&self, destination: &Destination) -> bool {
        self.patterns.iter().any(|p| p.matches(destination))
    }

    /// Validates a session's requested policy: the syntax, then each entry against the bound.
    /// `mode: none` is always accepted; `allowlist` is refused with `egress_not_permitted` when
    /// egress is disabled, even with an empty list. The server calls this on session create.
    pub fn validate(&self, request: &NetworkRequest) -> Result<SessionPolicy, PolicyError> {
        let policy = SessionPolicy::parse(request)?;
        if policy.mode == Mode::Allowlist && self.is_disabled() {
            return Err(PolicyError::EgressDisabled);
        }
        if let Some((entry, _)) = request
            .allow
            .iter()
            .zip(&policy.allow)
            .find(|(_, pattern)| !self.patterns.iter().any(|p| p.covers(pattern)))
        {
            return Err(PolicyError::NotPermitted { entry: entry.clone() });
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mode: Mode, allow: &[&str]) -> NetworkRequest {
        NetworkRequest { mode, allow: allow.iter().map(|s| s.to_string()).collect() }
    }

    fn permitted(patterns: &[&str]) -> Permitted {
        Permitted::new(patterns.iter().map(|p| p.parse().unwrap()).collect())
    }

    fn dest(raw: &str) -> Destination {
        Destination::parse_authority(raw).unwrap()
    }

    #[test]
    fn none_is_always_accepted_and_allows_nothing() {
        for bound in [permitted(&[]), permitted(&["*:*"])] {
            let policy = bound.validate(&request(Mode::None, &[])).unwrap();
            assert_eq!(policy, SessionPolicy::none());
            assert!(!policy.allows(&dest("pypi.org:443")));
        }
        let error = permitted(&["*:*"]).validate(&request(Mode::None, &["pypi.org:443"])).unwrap_err();
        assert_eq!(error, PolicyError::AllowWithoutAllowlist);
        assert_eq!(error.code(), "invalid_egress_policy");
    }

    #[test]
    fn an_allowlist_needs_the_operator_to_permit_egress() {
        let disabled = permitted(&[]);
        for allow in [&[][..], &["pypi.org:443"][..]] {
            let error = disabled.validate(&request(Mode::Allowlist, allow)).unwrap_err();
            assert_eq!(error, PolicyError::EgressDisabled);
            assert_eq!(error.code(), "egress_not_permitted");
        }
    }

    #[test]
    fn every_entry_must_be_covered() {
        let bound = permitted(&["pypi.org:443", "*.pythonhosted.org:443", "127.0.0.1:*"]);
        let ok = bound
            .validate(&request(
                Mode::Allowlist,
                &["PyPI.org:443", "files.pythonhosted.org:443", "127.0.0.1:8080"],
            ))
            .unwrap();
        assert_eq!(ok.mode(), Mode::Allowlist);
        assert_eq!(ok.allow().len(), 3);
        assert!(ok.allows(&dest("pypi.org:443")));
        assert!(ok.allows(&dest("files.pythonhosted.org:443")));
        assert!(!ok.allows(&dest("pypi.org:80")));
        assert!(!ok.allows(&dest("127.0.0.1:8081")));

        for (allow, entry) in [
            (&["pypi.org:443", "pypi.org:80"][..], "pypi.org:80"),
            (&["*.org:443"][..], "*.org:443"),
            (&["pythonhosted.org:443"][..], "pythonhosted.org:443"),
            (&["*:443"][..], "*:443"),
            (&["127.0.0.2:80"][..], "127.0.0.2:80"),
            (&["localhost:8080"][..], "localhost:8080"),
        ] {
            let error = bound.validate(&request(Mode::Allowlist, allow)).unwrap_err();
            assert_eq!(error, PolicyError::NotPermitted { entry: entry.into() }, "{allow:?}");
            assert_eq!(error.code(), "egress_not_permitted");
        }
        let error = bound.validate(&request(Mode::Allowlist, &["localhost:8080"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "network.allow: \"localhost:8080\" is not within what this server permits"
        );
    }

    #[test]
    fn invalid_entries_are_named_with_their_reason() {
        let error = permitted(&["*:*"])
            .validate(&request(Mode::Allowlist, &["ok.example:1", "pypi.org"]))
            .unwrap_err();
        assert_eq!(error.code(), "invalid_egress_pattern");
        assert_eq!(
            error.to_string(),
            "network.allow: \"pypi.org\" is not a valid pattern: \"pypi.org\" has no port: write host:port"
        );
        // Syntax is checked before the bound, so the client learns the real problem.
        let error = permitted(&[]).validate(&request(Mode::Allowlist, &["a:b"])).unwrap_err();
        assert_eq!(error.code(), "invalid_egress_pattern");
    }

    #[test]
    fn the_list_is_bounded() {
        let many: Vec<String> =
            (1..=MAX_ALLOW_ENTRIES as u16 + 1).map(|p| format!("a.example:{p}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let error = permitted(&["*:*"]).validate(&request(Mode::Allowlist, &many)).unwrap_err();
        assert_eq!(error, PolicyError::TooManyEntries { count: MAX_ALLOW_ENTRIES + 1 });
        assert!(permitted(&["*:*"]).validate(&request(Mode::Allowlist, &many[..MAX_ALLOW_ENTRIES])).is_ok());
    }

    #[test]
    fn the_operator_bound_applies_at_each_attempt() {
        let bound = permitted(&["*.example.com:443"]);
        assert!(bound.permits(&dest("a.example.com:443")));
        assert!(!bound.permits(&dest("example.com:443")));
        assert!(!permitted(&[]).permits(&dest("a.example.com:443")));
        assert!(!bound.is_disabled() && permitted(&[]).is_disabled());
    }

    #[test]
    fn policies_are_stored_as_the_request_form() {
        let json = r#"{"mode":"allowlist","allow":["PyPI.org:443","*.Example.com:*"]}"#;
        let policy: SessionPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::to_string(&policy).unwrap(),
            r#"{"mode":"allowlist","allow":["pypi.org:443","*.example.com:*"]}"#
        );
        let none: SessionPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(none, SessionPolicy::none());
        assert!(serde_json::from_str::<SessionPolicy>(r#"{"mode":"open"}"#).is_err());
        assert!(serde_json::from_str::<SessionPolicy>(r#"{"mode":"none","extra":1}"#).is_err());
        assert!(serde_json::from_str::<SessionPolicy>(r#"{"mode":"allowlist","allow":["x"]}"#).is_err());
    }
}
