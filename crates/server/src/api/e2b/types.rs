//! The JSON shapes of E2B's control plane (camelCase, as its SDKs send and read them).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// RFC 3339 with a `Z`, as E2B writes times.
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `POST /sandboxes` and `POST /v2/sandboxes` (fields the server does not use are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox {
    /// The template: an E2B alias or one of our template ids.
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// Seconds until the sandbox ends.
    pub timeout: Option<u32>,
    /// Labels kept with the sandbox.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Environment variables of everything run in it.
    #[serde(default)]
    pub env_vars: Option<BTreeMap<String, String>>,
    /// Pause instead of ending on timeout (not offered: `true` is refused).
    #[serde(default)]
    pub auto_pause: Option<bool>,
    /// Whether the sandbox may reach the internet (E2B's default: yes); see `docs/e2b.md` for
    /// how it maps onto what the operator permits.
    #[serde(default, rename = "allow_internet_access")]
    pub allow_internet_access: Option<bool>,
    /// Egress rules (`allowOut`, `denyOut`; the rest is ignored).
    #[serde(default)]
    pub network: Option<NetworkConfig>,
}

/// The `network` of a sandbox create, as far as this server honours it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Destinations allowed (names, `*.` wildcards, addresses; `0.0.0.0/0` for all).
    #[serde(default)]
    pub allow_out: Option<Vec<String>>,
    /// Destinations denied (`0.0.0.0/0`: everything not in `allowOut`).
    #[serde(default)]
    pub deny_out: Option<Vec<String>>,
}

/// `POST /sandboxes/{id}/timeout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeoutRequest {
    /// Seconds from now.
    pub timeout: u32,
}

/// `POST /sandboxes/{id}/connect` (v1 requires `timeout`; v2 may send `{}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// Seconds from now the sandbox should live at least.
    pub timeout: Option<u32>,
}

/// A sandbox as create and connect answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// The template asked for.
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// The sandbox id (the session id without `sess_`).
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    /// The template's alias, when it was asked for by one.
    pub alias: Option<String>,
    /// An identifier of this deployment.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// The envd version advertised.
    pub envd_version: String,
    /// The token every sandbox request must carry (`X-Access-Token`).
    pub envd_access_token: String,
    /// The token the code interpreter SDKs send (`E2B-Traffic-Access-Token`) on the requests
    /// that carry no `X-Access-Token`: the same token.
    pub traffic_access_token: Option<String>,
    /// Where the sandbox is addressed (`<port>-<id>.<domain>`).
    pub domain: String,
}

/// A sandbox as `GET /sandboxes/{id}` and the lists show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDetail {
    /// The template.
    #[serde(rename = "templateID")]
    pub template_id: String,
    /// The template's alias, if it has one.
    pub alias: Option<String>,
    /// The sandbox id.
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    /// An identifier of this deployment.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// When it started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    /// When it ends unless used or extended (its idle clock runs from the last activity).
    #[serde(serialize_with = "rfc3339")]
    pub end_at: DateTime<Utc>,
    /// The envd version advertised.
    pub envd_version: String,
    /// CPU cores (rounded up).
    pub cpu_count: u32,
    /// Memory, MiB.
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    /// Workspace disk, MiB.
    #[serde(rename = "diskSizeMB")]
    pub disk_size_mb: u64,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
    /// `running` (this server has no paused sandboxes).
    pub state: &'static str,
    /// The token (detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envd_access_token: Option<String>,
    /// Where the sandbox is addressed.
    pub domain: String,
}

/// `GET /v2/sandboxes` query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// `k=v&k2=v2`, keys and values URL-encoded (again).
    pub metadata: Option<String>,
    /// Comma-separated states (`running`, `paused`).
    pub state: Option<String>,
    /// Page size, 1-100 (default 100).
    pub limit: Option<i64>,
    /// Where the previous page ended.
    pub next_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_of_every_sdk_parse() {
        let v2: NewSandbox =
            serde_json::from_str(r#"{"templateID":"base","metadata":{},"envVars":{}}"#).unwrap();
        assert_eq!(v2.template_id, "base");
        assert!(v2.timeout.is_none());
        let old: NewSandbox = serde_json::from_str(
            r#"{"templateID":"base","timeout":300,"autoPause":false,"secure":true,"allow_internet_access":true,
                "metadata":{"a":"b"},"envVars":{"X":"1"},"mcp":null}"#,
        )
        .unwrap();
        assert_eq!((old.timeout, old.auto_pause), (Some(300), Some(false)));
        assert_eq!(old.env_vars.unwrap()["X"], "1");
        assert!(serde_json::from_str::<NewSandbox>("{}").is_err(), "templateID is required");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.5Z").unwrap().with_timezone(&Utc);
        let mut s = serde_json::Serializer::new(Vec::new());
        rfc3339(&t, &mut s).unwrap();
        assert_eq!(String::from_utf8(s.into_inner()).unwrap(), r#""2026-01-02T03:04:05.500Z""#);
    }
}
