//! The egress proxy: the only way out of a sandbox, on the host, outside it.
//!
//! A sandbox has no network. A session whose policy allows some destinations reaches them
//! through this proxy, on a listener that belongs to that session alone (the listener is the
//! session's identity). The proxy speaks HTTP/1.1: `CONNECT host:port` opens a tunnel (TLS is not
//! intercepted) and a plain request in absolute form is forwarded. Each attempt is decided by:
//!
//! 1. the session's allow-list ([`SessionPolicy`]) and the operator's bound ([`Permitted`]),
//!    both made of `host:port` [`Pattern`]s;
//! 2. the session's connection limit ([`Limits`]);
//! 3. the address the proxy itself resolved the name to ([`Resolver`]), checked by
//!    [`AddressRules`], and connected to exactly, so DNS rebinding cannot reach a forbidden
//!    address.
//!
//! Every attempt yields an [`AuditRecord`] for the [`AuditSink`], and counters through
//! [`EgressMetrics`]. `docs/egress.md` describes the design.

pub mod address;
pub mod audit;
pub mod connect;
pub mod credential;
pub mod decision;
pub mod destination;
mod http_forward;
pub mod limits;
mod metered;
pub mod pattern;
pub mod policy;
pub mod proxy;
pub mod resolve;
pub mod settings;
mod tunnel;

pub use address::{AddressClass, AddressRange, AddressRules};
pub use audit::{AuditRecord, AuditSink, EgressMetrics, MemorySink, RequestKind};
pub use connect::{Connector, TcpConnector};
pub use credential::{EgressKey, Grant, KeyError, LookupError, SessionLookup};
pub use decision::{Decision, DecisionKind, Failure, PolicyDenial};
pub use destination::{Destination, Host, ParseError};
pub use limits::Limits;
pub use pattern::Pattern;
pub use policy::{MAX_ALLOW_ENTRIES, Mode, NetworkRequest, Permitted, PolicyError, SessionPolicy};
pub use proxy::{EXECUTION_HEADER, Listener, Proxy, ProxyBuilder, bind_unix_socket};
pub use resolve::{ResolveError, Resolver, StaticResolver, SystemResolver};
pub use settings::{EgressSettings, SettingsError};
