//! E2B's control plane: sandboxes created, found, listed, extended and killed, on top of the
//! sessions service. A sandbox is a session; its id is the session id without `sess_`.

use super::types::{ConnectRequest, ListQuery, NewSandbox, Sandbox, SandboxDetail, TimeoutRequest};
use super::{sandbox_id, session_id};
use crate::api::error::{ApiError, E2bError};
use crate::api::extract::IdempotencyKey;
use crate::caller::Caller;
use crate::service::error::ServiceError;
use crate::service::idempotency::{Claim, Idempotency};
use crate::service::sessions::NewSession;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Duration;
use sandbox_core::model::{Session, SessionStatus};
use sandbox_store::SessionFilter;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// The most sandboxes one list page holds (E2B's own maximum).
const MAX_PAGE: i64 = 100;
/// The most running sessions a list looks through.
const MAX_SCANNED: u64 = 10_000;

/// A JSON body, with E2B's error body when it does not parse.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, E2bError> {
    serde_json::from_slice(bytes)
        .map_err(|e| E2bError(ApiError::bad_request("malformed_json", format!("invalid request body: {e}"))))
}

/// The E2B template name `name` stands for among ours.
fn resolve_template<'a>(state: &'a AppState, name: &'a str) -> &'a str {
    state.settings.e2b.template_aliases.get(name).map(String::as_str).unwrap_or(name)
}

/// The E2B alias of one of our templates, if one names it.
fn alias_of(state: &AppState, template_id: &str) -> Option<String> {
    state.settings.e2b.template_aliases.iter().find(|(_, t)| *t == template_id).map(|(a, _)| a.clone())
}

/// The session a sandbox id names, if the caller may see it and it has not ended: 404 as E2B
/// answers it otherwise.
async fn live_session(state: &AppState, caller: &Caller, id: &str) -> Result<Session, E2bError> {
    let missing = || E2bError(ApiError::not_found("sandbox_not_found", format!("sandbox {id} not found")));
    let sid = session_id(id).ok_or_else(missing)?;
    match state.sessions.get(caller, &sid).await {
        Ok(s) if !s.status.is_final() => Ok(s),
        Ok(_) | Err(ServiceError::NotFound { .. }) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// The create/connect answer for a session.
fn sandbox(state: &AppState, s: &Session, asked: &str) -> Result<Sandbox, E2bError> {
    let e2b = &state.settings.e2b;
    let token = state.access_tokens.token(&s.id)?;
    Ok(Sandbox {
        template_id: asked.to_owned(),
        sandbox_id: sandbox_id(&s.id),
        alias: (asked != s.template_id).then(|| asked.to_owned()).or_else(|| alias_of(state, &s.template_id)),
        client_id: state.settings.deployment_id(),
        envd_version: e2b.envd_version.clone(),
        envd_access_token: token.clone(),
        traffic_access_token: Some(token),
        domain: e2b.domain.clone(),
    })
}

/// The detail of a session.
fn detail(state: &AppState, s: Session, with_token: bool) -> Result<SandboxDetail, E2bError> {
    let e2b = &state.settings.e2b;
    let idle_from = s.last_activity_at.unwrap_or(s.created_at);
    Ok(SandboxDetail {
        alias: alias_of(state, &s.template_id),
        sandbox_id: sandbox_id(&s.id),
        client_id: state.settings.deployment_id(),
        started_at: s.created_at,
        end_at: idle_from + Duration::seconds(i64::from(s.timeout_sec)),
        envd_version: e2b.envd_version.clone(),
        cpu_count: s.cpu.millis().div_ceil(1000),
        memory_mb: s.memory.mib(),
        disk_size_mb: s.disk.mib(),
        state: "running",
        envd_access_token: if with_token { Some(state.access_tokens.token(&s.id)?) } else { None },
        domain: e2b.domain.clone(),
        metadata: s.metadata,
        template_id: s.template_id,
    })
}

/// Whether an E2B destination means every address (`0.0.0.0/0`, `::/0`).
fn is_all_traffic(entry: &str) -> bool {
    matches!(entry.trim(), "0.0.0.0/0" | "::/0")
}

/// E2B's egress options as a session's network policy, within what the operator permits:
///
/// - `network.allowOut` (names, `*.` wildcards, addresses; no ports): each entry becomes the
///   patterns `entry:port` for the ports the operator permits it on (`0.0.0.0/0`: any host); an
///   entry the operator permits on no port is kept as `entry:*`, which the policy check then
///   refuses with `egress_not_permitted`, as it refuses any `allowOut` while egress is disabled.
/// - no `allowOut`, and `allow_internet_access: false` or `denyOut` with all traffic: `none`.
/// - otherwise (E2B's default, internet access): the operator's whole `egress.permitted`, or
///   `none` when egress is disabled, so clients that send `allow_internet_access: true` by
///   default are not refused.
fn network_request(
    settings: &sandbox_egress::EgressSettings,
    req: &NewSandbox,
) -> sandbox_egress::NetworkRequest {
    use sandbox_egress::{Mode, NetworkRequest, Pattern};
    let network = req.network.clone().unwrap_or_default();
    let allow_out = network.allow_out.unwrap_or_default();
    let deny_all = req.allow_internet_access == Some(false)
        || network.deny_out.unwrap_or_default().iter().any(|d| is_all_traffic(d));
    let allowlist = |allow: Vec<String>| NetworkRequest { mode: Mode::Allowlist, allow };
    if allow_out.is_empty() {
        return match deny_all || settings.permitted.is_empty() {
            true => NetworkRequest::default(),
            false => allowlist(settings.permitted.iter().map(Pattern::to_string).collect()),
        };
    }
    let mut allow: Vec<String> = Vec::new();
    for entry in &allow_out {
        let host = match entry.trim() {
            all if is_all_traffic(all) => "*".to_owned(),
            literal => match literal.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
                _ => literal.to_owned(),
            },
        };
        let candidates: Vec<Pattern> = settings
            .permitted
            .iter()
            .filter_map(|p| {
                let port = p.to_string().rsplit_once(':')?.1.to_owned();
                let candidate: Pattern = format!("{host}:{port}").parse().ok()?;
                p.covers(&candidate).then_some(candidate)
            })
            .collect();
        // `a.example.com:*` makes `a.example.com:8443` needless.
        let mut found: Vec<String> = candidates
            .iter()
            .filter(|c| !candidates.iter().any(|d| d != *c && d.covers(c)))
            .map(Pattern::to_string)
            .collect();
        if found.is_empty() {
            found.push(format!("{host}:*"));
        }
        for pattern in found {
            if !allow.contains(&pattern) {
                allow.push(pattern);
            }
        }
    }
    allowlist(allow)
}

/// `POST /sandboxes` and `POST /v2/sandboxes`: a new session. With `Idempotency-Key`, a retry
/// answers with the sandbox the first request made.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    raw: Bytes,
) -> Result<(StatusCode, Json<Sandbox>), E2bError> {
    let req: NewSandbox = body(&raw)?;
    if req.auto_pause == Some(true) {
        return Err(E2bError(ApiError::bad_request(
            "pause_unsupported",
            "this server cannot pause sandboxes; create without autoPause",
        )));
    }
    let ticket = match key {
        None => None,
        Some(key) => match state.idempotency.claim(&caller, &key, "e2b.sandboxes.create", &req).await? {
            Claim::New(ticket) => Some(ticket),
            Claim::Done(id) => {
                let session = state.sessions.get(&caller, &id).await.map_err(|e| match e {
                    ServiceError::NotFound { .. } => Idempotency::gone(&key, &id),
                    e => e,
                })?;
                return Ok((StatusCode::CREATED, Json(sandbox(&state, &session, &req.template_id)?)));
            }
        },
    };
    let new = NewSession {
        template_id: resolve_template(&state, &req.template_id).to_owned(),
        timeout: req.timeout,
        env_vars: req.env_vars.clone().unwrap_or_default(),
        metadata: req.metadata.clone().unwrap_or_default(),
        fail_on_dependency_error: true,
        network: network_request(&state.settings.egress, &req),
        ..Default::default()
    };
    let created = state.sessions.create(&caller, new, true).await;
    state.idempotency.settle(ticket, created.as_ref().ok().map(|s| s.id.as_str())).await;
    let session = created?;
    Ok((StatusCode::CREATED, Json(sandbox(&state, &session, &req.template_id)?)))
}

/// `GET /sandboxes/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SandboxDetail>, E2bError> {
    let s = live_session(&state, &caller, &id).await?;
    Ok(Json(detail(&state, s, true)?))
}

/// `DELETE /sandboxes/{id}`: 204, or 404 when there is no such sandbox (any more).
pub async fn kill(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    let s = live_session(&state, &caller, &id).await?;
    state.sessions.delete(&caller, &s.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/timeout`: the sandbox ends `timeout` seconds from now.
pub async fn set_timeout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<StatusCode, E2bError> {
    let req: TimeoutRequest = body(&raw)?;
    let s = live_session(&state, &caller, &id).await?;
    state.sessions.set_timeout(&caller, &s.id, req.timeout).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/connect` and `POST /v2/sandboxes/{id}/connect`: 200 with the sandbox
/// (it is always running); a `timeout` only ever extends its life.
pub async fn connect(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Sandbox>, E2bError> {
    let req: ConnectRequest = if raw.is_empty() { ConnectRequest::default() } else { body(&raw)? };
    let mut s = live_session(&state, &caller, &id).await?;
    if let Some(t) = req.timeout {
        let ends = s.last_activity_at.unwrap_or(s.created_at) + Duration::seconds(i64::from(s.timeout_sec));
        if ends < chrono::Utc::now() + Duration::seconds(i64::from(t)) {
            s = state.sessions.set_timeout(&caller, &s.id, t).await?;
        }
    }
    let asked = alias_of(&state, &s.template_id).unwrap_or_else(|| s.template_id.clone());
    Ok(Json(sandbox(&state, &s, &asked)?))
}

/// `POST /sandboxes/{id}/pause`: this server cannot pause sandboxes (501).
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    live_session(&state, &caller, &id).await?;
    Err(E2bError(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "pause_unsupported",
        "this server cannot pause sandboxes",
    )))
}

/// `POST /sandboxes/{id}/resume`: a sandbox here is never paused (409 when it runs).
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    live_session(&state, &caller, &id).await?;
    Err(E2bError(ApiError::conflict("sandbox_not_paused", format!("sandbox {id} is running, not paused"))))
}

/// `GET /sandboxes/{id}/metrics`: none are collected (an empty list).
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>, E2bError> {
    live_session(&state, &caller, &id).await?;
    Ok(Json(Vec::new()))
}

/// The metadata filter of a list: `k=v&k2=v2`, each key and value URL-encoded once more.
fn metadata_filter(raw: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The caller's running sessions whose labels include `wanted`, newest first.
async fn matching(
    state: &AppState,
    caller: &Caller,
    wanted: &BTreeMap<String, String>,
) -> Result<Vec<Session>, E2bError> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let filter =
            SessionFilter { status: Some(SessionStatus::Running), limit: 1000, offset, ..Default::default() };
        let page = state.sessions.list(caller, filter).await?;
        let n = page.items.len() as u64;
        out.extend(
            page.items.into_iter().filter(|s| wanted.iter().all(|(k, v)| s.metadata.get(k) == Some(v))),
        );
        offset += n;
        if n == 0 || offset >= page.total || offset >= MAX_SCANNED {
            return Ok(out);
        }
    }
}

/// `GET /v2/sandboxes`: the caller's sandboxes, filtered by metadata and state, a page at a
/// time (`limit`, `nextToken`; the next page's token in `X-Next-Token`).
pub async fn list_v2(State(state): State<AppState>, caller: Caller, uri: Uri) -> Result<Response, E2bError> {
    let Query(q) = Query::<ListQuery>::try_from_uri(&uri)
        .map_err(|e| E2bError(ApiError::bad_request("invalid_query", e.body_text())))?;
    let states: Vec<&str> =
        q.state.as_deref().map(|s| s.split(',').map(str::trim).collect()).unwrap_or_default();
    if let Some(bad) = states.iter().find(|s| !matches!(**s, "running" | "paused" | "")) {
        return Err(E2bError(ApiError::bad_request("invalid_state", format!("unknown state {bad:?}"))));
    }
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(E2bError(ApiError::bad_request("invalid_limit", "limit must be between 1 and 100")));
    }
    let start: usize = match q.next_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            E2bError(ApiError::bad_request("invalid_next_token", "nextToken is not one this server gave"))
        })?,
    };
    // Only running sandboxes exist here: asking for paused ones alone finds none.
    let sessions = if states.is_empty() || states.contains(&"running") {
        matching(&state, &caller, &metadata_filter(q.metadata.as_deref().unwrap_or(""))).await?
    } else {
        Vec::new()
    };
    let total = sessions.len();
    let items = sessions
        .into_iter()
        .skip(start)
        .take(limit as usize)
        .map(|s| detail(&state, s, false))
        .collect::<Result<Vec<_>, _>>()?;
    let end = start + items.len();
    let mut resp = Json(items).into_response();
    if end < total {
        resp.headers_mut().insert("x-next-token", HeaderValue::from(end));
    }
    Ok(resp)
}

/// `GET /sandboxes` (SDK 1.x): every running sandbox of the caller's, filtered by metadata.
pub async fn list_v1(State(state): State<AppState>, caller: Caller, uri: Uri) -> Result<Response, E2bError> {
    let Query(q) = Query::<ListQuery>::try_from_uri(&uri)
        .map_err(|e| E2bError(ApiError::bad_request("invalid_query", e.body_text())))?;
    let sessions = matching(&state, &caller, &metadata_filter(q.metadata.as_deref().unwrap_or(""))).await?;
    let items = sessions.into_iter().map(|s| detail(&state, s, false)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(items).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_egress::{EgressSettings, Mode, NetworkRequest};

    fn settings(permitted: &[&str]) -> EgressSettings {
        EgressSettings {
            permitted: permitted.iter().map(|p| p.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn create(body: serde_json::Value) -> NewSandbox {
        serde_json::from_value(body).unwrap()
    }

    fn allowlist(allow: &[&str]) -> NetworkRequest {
        NetworkRequest { mode: Mode::Allowlist, allow: allow.iter().map(|s| s.to_string()).collect() }
    }

    /// E2B's default (internet on) is the operator's whole bound, or none when egress is off;
    /// turning it off, or denying all traffic, is none.
    #[test]
    fn internet_access_is_what_the_operator_permits() {
        let on = settings(&["pypi.org:443", "*.example.com:*"]);
        let off = settings(&[]);
        let default = create(serde_json::json!({"templateID": "base", "allow_internet_access": true}));
        assert_eq!(network_request(&on, &default), allowlist(&["pypi.org:443", "*.example.com:*"]));
        assert_eq!(network_request(&off, &default), NetworkRequest::default(), "not refused");
        let unsaid = create(serde_json::json!({"templateID": "base"}));
        assert_eq!(network_request(&on, &unsaid), allowlist(&["pypi.org:443", "*.example.com:*"]));
        for no in [
            serde_json::json!({"templateID": "base", "allow_internet_access": false}),
            serde_json::json!({"templateID": "base", "network": {"denyOut": ["0.0.0.0/0"]}}),
        ] {
            assert_eq!(network_request(&on, &create(no)), NetworkRequest::default());
        }
    }

    /// `allowOut` entries take the ports the operator permits them on; what no pattern covers is
    /// kept so that the policy check refuses it.
    #[test]
    fn allow_out_entries_take_the_permitted_ports() {
        let on = settings(&["pypi.org:443", "*.example.com:*", "*:8443", "127.0.0.1:*"]);
        let req = create(serde_json::json!({
            "templateID": "base",
            "allow_internet_access": false,
            "network": {"allowOut": ["pypi.org", "a.example.com", "127.0.0.1", "0.0.0.0/0"], "denyOut": ["0.0.0.0/0"]},
        }));
        assert_eq!(
            network_request(&on, &req),
            allowlist(&["pypi.org:443", "pypi.org:8443", "a.example.com:*", "127.0.0.1:*", "*:8443"])
        );
        let refused =
            create(serde_json::json!({"templateID": "base", "network": {"allowOut": ["other.org"]}}));
        let request = network_request(&on, &refused);
        assert_eq!(request, allowlist(&["other.org:8443"]));
        let only_443 = settings(&["pypi.org:443"]);
        let request = network_request(&only_443, &refused);
        assert_eq!(request, allowlist(&["other.org:*"]));
        let error = only_443.permitted().validate(&request).unwrap_err();
        assert_eq!(error.code(), "egress_not_permitted");
        let error =
            settings(&[]).permitted().validate(&network_request(&settings(&[]), &refused)).unwrap_err();
        assert_eq!(error.code(), "egress_not_permitted", "allowOut while egress is disabled");
    }
}
