//! Prometheus metrics, served at `/metrics` in the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    template: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TemplateLabels {
    template: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    language: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabels {
    language: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    template: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabels {
    tool: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EgressLabels {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: String,
}

type Buckets = fn() -> Histogram;

fn latency_buckets() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram, Buckets>,
    sessions_created: Family<SessionLabels, Counter>,
    session_start_seconds: Family<TemplateLabels, Histogram, Buckets>,
    executions: Family<ExecutionLabels, Counter>,
    execution_seconds: Family<LanguageLabels, Histogram, Buckets>,
    sessions: Family<StatusLabels, Gauge>,
    pool_claims: Family<ClaimLabels, Counter>,
    pool_ready_seconds: Family<TemplateLabels, Histogram, Buckets>,
    pool_ready: Family<TemplateLabels, Gauge>,
    leader: Gauge,
    mcp_tool_calls: Family<ToolLabels, Counter>,
    egress_attempts: Family<EgressLabels, Counter>,
    egress_bytes: Family<DirectionLabels, Counter>,
    egress_audit_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sandbox");
        let m = Metrics {
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_buckets as Buckets),
            sessions_created: Family::default(),
            session_start_seconds: Family::new_with_constructor(latency_buckets as Buckets),
            executions: Family::default(),
            execution_seconds: Family::new_with_constructor(latency_buckets as Buckets),
            sessions: Family::default(),
            pool_claims: Family::default(),
            pool_ready_seconds: Family::new_with_constructor(latency_buckets as Buckets),
            pool_ready: Family::default(),
            leader: Gauge::default(),
            mcp_tool_calls: Family::default(),
            egress_attempts: Family::default(),
            egress_bytes: Family::default(),
            egress_audit_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "HTTP requests by route and status", m.http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", m.http_seconds.clone());
        registry.register(
            "sessions_created",
            "Session creations by template and outcome",
            m.sessions_created.clone(),
        );
        registry.register(
            "session_start_duration_seconds",
            "Time from a create request to a ready sandbox",
            m.session_start_seconds.clone(),
        );
        registry.register("executions", "Finished executions by language and status", m.executions.clone());
        registry.register("execution_duration_seconds", "Execution wall time", m.execution_seconds.clone());
        registry.register("sessions", "Sessions by status", m.sessions.clone());
        registry.register(
            "pool_claims",
            "Session creations by template and pool result (hit or miss)",
            m.pool_claims.clone(),
        );
        registry.register(
            "pool_time_to_ready_seconds",
            "Time for a pool sandbox to become ready",
            m.pool_ready_seconds.clone(),
        );
        registry.register("pool_ready", "Ready pool sandboxes by template", m.pool_ready.clone());
        registry.register(
            "lifecycle_leader",
            "1 when this replica runs the lifecycle loops",
            m.leader.clone(),
        );
        registry.register(
            "mcp_tool_calls",
            "MCP tool calls by tool and outcome (ok, or the error code)",
            m.mcp_tool_calls.clone(),
        );
        registry.register(
            "egress_attempts",
            "Attempts to reach a destination through the egress proxy, by decision",
            m.egress_attempts.clone(),
        );
        registry.register(
            "egress_bytes",
            "Bytes through the egress proxy by direction (up: to destinations, down: from them)",
            m.egress_bytes.clone(),
        );
        registry.register(
            "egress_audit_dropped",
            "Egress audit records dropped because the queue to the database was full",
            m.egress_audit_dropped.clone(),
        );
        // Every decision shows from the start, at 0.
        for kind in sandbox_egress::DecisionKind::ALL {
            m.egress_attempts.get_or_create(&EgressLabels { decision: kind.as_str().to_owned() }).inc_by(0);
        }
        Metrics { registry, ..m }
    }
}

impl sandbox_egress::EgressMetrics for Metrics {
    fn decided(&self, decision: &sandbox_egress::Decision) {
        let labels = EgressLabels { decision: decision.kind().as_str().to_owned() };
        self.egress_attempts.get_or_create(&labels).inc();
    }

    fn transferred(&self, bytes_up: u64, bytes_down: u64) {
        for (direction, n) in [("up", bytes_up), ("down", bytes_down)] {
            self.egress_bytes.get_or_create(&DirectionLabels { direction: direction.to_owned() }).inc_by(n);
        }
    }
}

impl Metrics {
    /// Records one HTTP request.
    pub fn http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let (method, route) = (method.to_owned(), route.to_owned());
        self.http_requests
            .get_or_create(&HttpLabels { method: method.clone(), route: route.clone(), status })
            .inc();
        self.http_seconds.get_or_create(&RouteLabels { method, route }).observe(elapsed.as_secs_f64());
    }

    /// Records a session creation.
    pub fn session_created(&self, template: &str, ok: bool, elapsed: Duration) {
        let outcome = if ok { "running" } else { "failed" }.to_owned();
        self.sessions_created.get_or_create(&SessionLabels { template: template.to_owned(), outcome }).inc();
        if ok {
            self.session_start_seconds
                .get_or_create(&TemplateLabels { template: template.to_owned() })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Records a finished execution.
    pub fn execution(&self, language: &str, status: &str, elapsed: Duration) {
        let language = language.to_owned();
        self.executions
            .get_or_create(&ExecutionLabels { language: language.clone(), status: status.to_owned() })
            .inc();
        self.execution_seconds.get_or_create(&LanguageLabels { language }).observe(elapsed.as_secs_f64());
    }

    /// Records a pool claim.
    pub fn pool_claim(&self, template: &str, hit: bool) {
        let result = if hit { "hit" } else { "miss" }.to_owned();
        self.pool_claims.get_or_create(&ClaimLabels { template: template.to_owned(), result }).inc();
    }

    /// Records a pool sandbox becoming ready.
    pub fn pool_ready(&self, template: &str, elapsed: Duration) {
        self.pool_ready_seconds
            .get_or_create(&TemplateLabels { template: template.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the number of ready sandboxes of a template's pool.
    pub fn pool_size(&self, template: &str, ready: u64) {
        self.pool_ready.get_or_create(&TemplateLabels { template: template.to_owned() }).set(ready as i64);
    }

    /// Records an MCP tool call: `ok`, or the code it was refused with.
    pub fn mcp_tool_call(&self, tool: &str, outcome: &str) {
        let labels = ToolLabels { tool: tool.to_owned(), outcome: outcome.to_owned() };
        self.mcp_tool_calls.get_or_create(&labels).inc();
    }

    /// Records an egress audit record dropped (the queue to the database was full).
    pub fn egress_audit_dropped(&self) {
        self.egress_audit_dropped.inc();
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The exposition text, with the session counts as of now.
    pub fn render(&self, session_counts: &[(&str, u64)]) -> String {
        for (status, n) in session_counts {
            self.sessions.get_or_create(&StatusLabels { status: (*status).to_owned() }).set(*n as i64);
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let m = Metrics::default();
        m.http("GET", "/api/v1/health", 200, Duration::from_millis(3));
        m.execution("python", "completed", Duration::from_millis(20));
        m.session_created("python-basic", true, Duration::from_millis(400));
        let text = m.render(&[("running", 2)]);
        assert!(
            text.contains(
                r#"sandbox_http_requests_total{method="GET",route="/api/v1/health",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"sandbox_executions_total{language="python",status="completed"} 1"#));
        assert!(text.contains(r#"sandbox_sessions{status="running"} 2"#));
        assert!(text.contains("sandbox_session_start_duration_seconds_bucket"));
    }
}
