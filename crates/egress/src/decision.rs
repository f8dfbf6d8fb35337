//! What the proxy decided about one attempt, and why.

use crate::address::AddressClass;
use http::StatusCode;
use std::fmt;

/// The outcome of one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Connected to the destination.
    Allowed,
    /// The destination is outside the session's allow-list or the operator's bound.
    DeniedPolicy(PolicyDenial),
    /// The destination resolved only to addresses the proxy may not reach.
    DeniedAddress(AddressClass),
    /// The session already has as many connections open as it may.
    DeniedLimit,
    /// Nothing was decided about the destination: the request was malformed, the name did not
    /// resolve, the connection could not be made, or the attempt was cancelled first.
    Error(Failure),
}

/// Which policy refused the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyDenial {
    /// No entry of the session's allow-list matches (or its mode is `none`).
    NotInAllowList,
    /// The session's list matches, but the operator's `egress.permitted` no longer does.
    NotPermittedByOperator,
}

/// Why an attempt failed without a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The request named no destination the proxy can read.
    BadRequest,
    /// The name did not resolve, or resolved to no address.
    ResolveFailed,
    /// Every permitted address refused the connection or was unreachable.
    ConnectFailed,
    /// Resolving and connecting took longer than the connect timeout.
    ConnectTimeout,
    /// The client went away, or the session's proxy stopped, before a decision.
    Cancelled,
}

/// The decision without its reason: the label of the proxy's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// [`Decision::Allowed`].
    Allowed,
    /// [`Decision::DeniedPolicy`].
    DeniedPolicy,
    /// [`Decision::DeniedAddress`].
    DeniedAddress,
    /// [`Decision::DeniedLimit`].
    DeniedLimit,
    /// [`Decision::Error`].
    Error,
}

impl DecisionKind {
    /// Every kind, for registering counters up front.
    pub const ALL: [DecisionKind; 5] = [
        DecisionKind::Allowed,
        DecisionKind::DeniedPolicy,
        DecisionKind::DeniedAddress,
        DecisionKind::DeniedLimit,
        DecisionKind::Error,
    ];

    /// `allowed`, `denied_policy`, `denied_address`, `denied_limit` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allowed => "allowed",
            DecisionKind::DeniedPolicy => "denied_policy",
            DecisionKind::DeniedAddress => "denied_address",
            DecisionKind::DeniedLimit => "denied_limit",
            DecisionKind::Error => "error",
        }
    }
}

impl Decision {
    /// The kind, without the reason.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::Allowed => DecisionKind::Allowed,
            Decision::DeniedPolicy(_) => DecisionKind::DeniedPolicy,
            Decision::DeniedAddress(_) => DecisionKind::DeniedAddress,
            Decision::DeniedLimit => DecisionKind::DeniedLimit,
            Decision::Error(_) => DecisionKind::Error,
        }
    }

    /// A stable snake_case reason: `allowed`, `not_in_allow_list`, `not_permitted_by_operator`,
    /// an [`AddressClass`] name, `too_many_connections`, `bad_request`, `resolve_failed`,
    /// `connect_failed`, `connect_timeout` or `cancelled`.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::DeniedPolicy(PolicyDenial::NotInAllowList) => "not_in_allow_list",
            Decision::DeniedPolicy(PolicyDenial::NotPermittedByOperator) => "not_permitted_by_operator",
            Decision::DeniedAddress(class) => class.as_str(),
            Decision::DeniedLimit => "too_many_connections",
            Decision::Error(Failure::BadRequest) => "bad_request",
            Decision::Error(Failure::ResolveFailed) => "resolve_failed",
            Decision::Error(Failure::ConnectFailed) => "connect_failed",
            Decision::Error(Failure::ConnectTimeout) => "connect_timeout",
            Decision::Error(Failure::Cancelled) => "cancelled",
        }
    }

    /// The status the client gets for an attempt that did not connect.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Decision::Allowed => StatusCode::OK,
            Decision::DeniedPolicy(_) | Decision::DeniedAddress(_) => StatusCode::FORBIDDEN,
            Decision::DeniedLimit => StatusCode::TOO_MANY_REQUESTS,
            Decision::Error(Failure::BadRequest) => StatusCode::BAD_REQUEST,
            Decision::Error(Failure::ResolveFailed | Failure::ConnectFailed) => StatusCode::BAD_GATEWAY,
            Decision::Error(Failure::ConnectTimeout) => StatusCode::GATEWAY_TIMEOUT,
            Decision::Error(Failure::Cancelled) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allowed => f.write_str("allowed"),
            other => write!(f, "{}: {}", other.kind().as_str(), other.reason()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_name_their_kind_reason_and_status() {
        for (decision, shown, status) in [
            (Decision::Allowed, "allowed", 200),
            (Decision::DeniedPolicy(PolicyDenial::NotInAllowList), "denied_policy: not_in_allow_list", 403),
            (
                Decision::DeniedPolicy(PolicyDenial::NotPermittedByOperator),
                "denied_policy: not_permitted_by_operator",
                403,
            ),
            (Decision::DeniedAddress(AddressClass::LinkLocal), "denied_address: link_local", 403),
            (Decision::DeniedLimit, "denied_limit: too_many_connections", 429),
            (Decision::Error(Failure::BadRequest), "error: bad_request", 400),
            (Decision::Error(Failure::ResolveFailed), "error: resolve_failed", 502),
            (Decision::Error(Failure::ConnectFailed), "error: connect_failed", 502),
            (Decision::Error(Failure::ConnectTimeout), "error: connect_timeout", 504),
            (Decision::Error(Failure::Cancelled), "error: cancelled", 503),
        ] {
            assert_eq!(decision.to_string(), shown);
            assert_eq!(decision.status().as_u16(), status, "{shown}");
            assert!(DecisionKind::ALL.contains(&decision.kind()));
        }
    }
}
