//! The egress proxy: the only way out of a sandbox, on the host, outside it.
//!
//! This first part holds the policy: the `host:port` [`Pattern`]s of a session's allow-list
//! ([`SessionPolicy`]) and of the operator's bound ([`Permitted`]), the [`AddressRules`] every
//! resolved address must pass, and the [`Decision`] about each attempt.

pub mod address;
pub mod decision;
pub mod destination;
pub mod pattern;
pub mod policy;

pub use address::{AddressClass, AddressRange, AddressRules};
pub use decision::{Decision, DecisionKind, Failure, PolicyDenial};
pub use destination::{Destination, Host, ParseError};
pub use pattern::Pattern;
pub use policy::{Mode, NetworkRequest, Permitted, PolicyError, SessionPolicy};
