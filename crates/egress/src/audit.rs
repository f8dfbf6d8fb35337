//! The audit trail: one record per attempt for an [`AuditSink`], and the callbacks of the counters.

use crate::decision::{Decision, Failure};
use crate::destination::Destination;
use crate::metered::Traffic;
use chrono::{DateTime, Utc};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How the client asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `CONNECT host:port`: a tunnel (TLS is not intercepted).
    Connect,
    /// A plain HTTP request in absolute form (`GET http://host/...`), forwarded.
    Http,
}

impl RequestKind {
    /// `connect` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Connect => "connect",
            RequestKind::Http => "http",
        }
    }
}

/// One attempt to reach a destination, handed to the [`AuditSink`] when the attempt ends,
/// however it ends (the session's proxy stopping included).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The session whose listener the connection came in on (the only identity the proxy
    /// trusts).
    pub session_id: String,
    /// What the client put in the `X-Sandbox-Execution` header, when it is a plausible id:
    /// untrusted metadata, for display only.
    pub execution_id: Option<String>,
    /// CONNECT or plain HTTP.
    pub kind: RequestKind,
    /// The host as the client named it (lower-case name, or address, IPv6 in brackets); for a
    /// request the proxy could not read, the authority of its target as sent (without
    /// credentials; empty if it had none), cut to 253 characters.
    pub host: String,
    /// The port, when the request named one the proxy could read.
    pub port: Option<u16>,
    /// The address connected to, or the one that was refused or failed; `None` when no address
    /// was reached (denied by policy, or the name did not resolve).
    pub address: Option<IpAddr>,
    /// What was decided.
    pub decision: Decision,
    /// Bytes sent to the destination (for plain HTTP: the request as forwarded, head included).
    pub bytes_up: u64,
    /// Bytes received from the destination (for plain HTTP: the whole response as received).
    pub bytes_down: u64,
    /// When the request arrived.
    pub started_at: DateTime<Utc>,
    /// From the request's arrival to the end of the connection (or to the refusal).
    pub duration: Duration,
}

/// Where audit records go. Called once per attempt, from the proxy's tasks, so it must not
/// block: a store-backed sink queues the record and writes it elsewhere.
pub trait AuditSink: Send + Sync {
    /// Takes one record.
    fn record(&self, record: AuditRecord);
}

/// Counters the server keeps in its own metrics registry.
pub trait EgressMetrics: Send + Sync {
    /// One attempt was decided.
    fn decided(&self, decision: &Decision);
    /// One allowed connection ended, having moved these bytes.
    fn transferred(&self, bytes_up: u64, bytes_down: u64);
}

/// No metrics.
impl EgressMetrics for () {
    fn decided(&self, _: &Decision) {}
    fn transferred(&self, _: u64, _: u64) {}
}

/// Keeps records in memory: for tests, and for anything that reads them back.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<AuditRecord>>,
    added: Notify,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// Every record so far, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `count` records are in, then returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<AuditRecord> {
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let records = self.records();
            if records.len() >= count {
                return records;
            }
            added.await;
        }
    }
}

impl AuditSink for MemorySink {
    fn record(&self, record: AuditRecord) {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
        self.added.notify_waiters();
    }
}

/// Where a session's attempts are reported.
#[derive(Clone)]
pub(crate) struct Reporter {
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) metrics: Arc<dyn EgressMetrics>,
}

/// One attempt in progress; its record goes to the sink when it is dropped.
pub(crate) struct Attempt {
    reporter: Reporter,
    record: AuditRecord,
    started: Instant,
    decided: bool,
    traffic: Option<Arc<Traffic>>,
}

impl Attempt {
    /// An attempt that arrived now, for a target whose authority the client wrote as `target`.
    pub(crate) fn new(
        reporter: Reporter,
        session_id: &str,
        execution_id: Option<String>,
        kind: RequestKind,
        target: &str,
    ) -> Attempt {
        Attempt {
            reporter,
            record: AuditRecord {
                session_id: session_id.to_owned(),
                execution_id,
                kind,
                host: target.chars().take(crate::destination::MAX_NAME_LEN).collect(),
                port: None,
                address: None,
                decision: Decision::Error(Failure::Cancelled),
                bytes_up: 0,
                bytes_down: 0,
                started_at: Utc::now(),
                duration: Duration::ZERO,
            },
            started: Instant::now(),
            decided: false,
            traffic: None,
        }
    }

    /// The destination the request was read as.
    pub(crate) fn destination(&mut self, destination: &Destination) {
        self.record.host = destination.host.to_string();
        self.record.port = Some(destination.port);
    }

    /// The address being tried (or refused).
    pub(crate) fn address(&mut self, address: IpAddr) {
        self.record.address = Some(address);
    }

    /// The bytes of the connection to the destination.
    pub(crate) fn traffic(&mut self, traffic: Arc<Traffic>) {
        self.traffic = Some(traffic);
    }

    /// Decides the attempt (once) and counts the decision.
    pub(crate) fn decide(&mut self, decision: Decision) {
        debug_assert!(!self.decided, "an attempt is decided once");
        self.decided = true;
        self.record.decision = decision;
        self.reporter.metrics.decided(&decision);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.decided {
            self.reporter.metrics.decided(&self.record.decision);
        }
        if let Some(traffic) = &self.traffic {
            self.record.bytes_up = traffic.up();
            self.record.bytes_down = traffic.down();
            self.reporter.metrics.transferred(self.record.bytes_up, self.record.bytes_down);
        }
        self.record.duration = self.started.elapsed();
        let record = self.record.clone();
        tracing::debug!(
            session = %record.session_id,
            host = %record.host,
            port = record.port,
            decision = %record.decision,
            up = record.bytes_up,
            down = record.bytes_down,
            "egress attempt"
        );
        self.reporter.audit.record(record);
    }
}
