//! E2B's code interpreter on our code contexts: `POST /execute` streams newline-delimited JSON
//! (`stdout`, `stderr`, `result`, `error`, `number_of_executions`, `end_of_execution`; never a
//! blank line), and `/contexts` creates, lists, deletes and restarts contexts. Each language
//! has a default context per sandbox, started on first use. A client that goes away interrupts
//! its cell.

use super::Target;
use super::envd::{HOME, home_path, workspace_path};
use crate::api::error::{ApiError, E2bError};
use crate::caller::Caller;
use crate::service::contexts::{ContextView, NewContext};
use crate::service::error::ServiceError;
use crate::service::executions::FeedEvent;
use crate::service::executions::NewExecution;
use crate::state::AppState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_core::display::DisplayOutput;
use sandbox_core::model::Execution;
use sandbox_core::{ExecutionStatus, Language};
use sandbox_protocol::{ExecEvent, StreamEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// The default context of each language in each sandbox, started on first use (by this API and
/// by MCP's `run_code`).
#[derive(Default)]
pub struct DefaultContexts(Mutex<HashMap<(String, Language), String>>);

impl DefaultContexts {
    /// The default context of `language` in the session, if one was started.
    pub fn get(&self, session_id: &str, language: Language) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&(session_id.to_owned(), language)).cloned()
    }

    /// Records the session's default context of `language`.
    pub fn set(&self, session_id: &str, language: Language, context_id: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.insert((session_id.to_owned(), language), context_id.to_owned());
    }

    /// Forgets a context that is gone (the next use starts another).
    pub fn forget(&self, context_id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, c| c != context_id);
    }
}

/// E2B's language names to ours (`js` and `ts` as the SDKs normalise them).
fn language(name: &str) -> Result<Language, ApiError> {
    match name.to_ascii_lowercase().as_str() {
        "python" | "python3" => Ok(Language::Python),
        "javascript" | "js" => Ok(Language::Javascript),
        "bash" | "shell" | "sh" => Ok(Language::Shell),
        other => Err(ApiError::bad_request(
            "language_unavailable",
            format!("language {other:?} is not offered; use python, javascript or bash"),
        )),
    }
}

/// Our language's E2B name.
fn language_name(l: Language) -> &'static str {
    match l {
        Language::Shell => "bash",
        other => other.as_str(),
    }
}

/// `POST /execute`'s body.
#[derive(Debug, Deserialize)]
pub struct ExecuteRequest {
    /// The cell.
    code: String,
    /// The context to run it in.
    context_id: Option<String>,
    /// The language whose default context runs it (not with `context_id`).
    language: Option<String>,
    /// Environment variables of this execution only (not offered: must be empty).
    env_vars: Option<BTreeMap<String, String>>,
}

/// A context as E2B shows it.
#[derive(Debug, Serialize)]
pub struct E2bContext {
    /// Its id.
    id: String,
    /// Its language.
    language: &'static str,
    /// Its working directory (under the home).
    cwd: String,
}

impl From<&ContextView> for E2bContext {
    fn from(v: &ContextView) -> Self {
        let cwd = match v.record.cwd.as_deref().map(workspace_path) {
            Some(Ok(p)) => home_path(&p),
            _ => HOME.to_owned(),
        };
        E2bContext { id: v.record.id.clone(), language: language_name(v.record.language), cwd }
    }
}

/// The context a cell runs in: the one named, or the language's default (started now if
/// needed; Python when neither is given).
async fn context_for(state: &AppState, t: &Target, req: &ExecuteRequest) -> Result<String, ApiError> {
    if let Some(id) = &req.context_id {
        return Ok(id.clone());
    }
    let lang = language(req.language.as_deref().unwrap_or("python"))?;
    if let Some(id) = state.e2b_contexts.get(&t.session.id, lang) {
        return Ok(id);
    }
    let new = NewContext { language: lang, cwd: None, env_vars: BTreeMap::new() };
    let view = state.contexts.create(&t.caller, &t.session.id, new).await?;
    state.e2b_contexts.set(&t.session.id, lang, &view.record.id);
    Ok(view.record.id)
}

/// One output line.
fn line(v: Value) -> Bytes {
    let mut text = serde_json::to_vec(&v).unwrap_or_default();
    text.push(b'\n');
    Bytes::from(text)
}

/// A display output as E2B's `Result`: each MIME type under its field, the rest in `extra`.
pub fn result_line(out: &DisplayOutput) -> Value {
    let mut fields = Map::new();
    let mut extra = Map::new();
    for (mime, value) in &out.data {
        let field = match mime.as_str() {
            "text/plain" => "text",
            "text/html" => "html",
            "text/markdown" => "markdown",
            "image/svg+xml" => "svg",
            "image/png" => "png",
            "image/jpeg" => "jpeg",
            "application/pdf" => "pdf",
            "text/latex" => "latex",
            "application/json" => "json",
            "application/javascript" => "javascript",
            other => {
                extra.insert(other.to_owned(), value.clone());
                continue;
            }
        };
        fields.insert(field.to_owned(), value.clone());
    }
    if !extra.is_empty() {
        fields.insert("extra".into(), Value::Object(extra));
    }
    fields.insert("type".into(), "result".into());
    fields.insert("is_main_result".into(), out.is_main_result.into());
    Value::Object(fields)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The lines that end a cell: its error, if any, then the execution count and the end.
fn ending(e: &Execution, shown: usize, count: Option<u64>) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = e.results.iter().skip(shown).map(|r| line(result_line(r))).collect();
    match (&e.error, e.status != ExecutionStatus::Completed) {
        (Some(err), _) => {
            out.push(line(json!({"type": "error", "name": err.name, "value": err.value, "traceback": err.traceback})))
        }
        (None, true) => out.push(line(json!({
            "type": "error",
            "name": "ExecutionError",
            "value": e.error_message.clone().unwrap_or_else(|| format!("the execution ended {}", e.status.as_str())),
            "traceback": "",
        }))),
        (None, false) => {}
    }
    if let Some(n) = count {
        out.push(line(json!({"type": "number_of_executions", "execution_count": n})));
    }
    out.push(line(json!({"type": "end_of_execution"})));
    out
}

/// Interrupts a cell whose client went away before its end (here and in MCP's `run_code`).
pub(crate) struct InterruptOnDrop {
    pub(crate) state: AppState,
    pub(crate) caller: Caller,
    pub(crate) session_id: String,
    pub(crate) context_id: String,
    /// Set once the cell has ended: nothing to interrupt then.
    pub(crate) ended: bool,
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (state, caller, session, context) =
            (self.state.clone(), self.caller.clone(), self.session_id.clone(), self.context_id.clone());
        tokio::spawn(async move {
            if let Err(e) = state.contexts.interrupt(&caller, &session, &context).await {
                tracing::info!(context_id = %context, error = %e, "could not interrupt a cell whose client left");
            }
        });
    }
}

/// `POST /execute`: runs a cell and streams its output as it happens.
pub async fn execute(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    raw: Bytes,
) -> Result<Response, E2bError> {
    let req: ExecuteRequest = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("invalid request body: {e}")))?;
    if req.context_id.is_some() && req.language.is_some() {
        return Err(
            ApiError::bad_request("invalid_request", "give a context_id or a language, not both").into()
        );
    }
    if req.env_vars.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(ApiError::bad_request(
            "env_vars_unsupported",
            "environment variables per execution are not offered; set them on the sandbox",
        )
        .into());
    }
    let context_id = context_for(&state, &t, &req).await?;
    let new = NewExecution {
        code: req.code,
        language: None,
        context_id: Some(context_id.clone()),
        timeout_sec: state.settings.limits.max_execution_timeout_sec,
        event: None,
    };
    let submitted = match state.executions.submit(&t.caller, &t.session.id, new).await {
        Ok(s) => s,
        Err(e) => {
            if matches!(e, ServiceError::NotFound { .. })
                || matches!(&e, ServiceError::Conflict { code: "context_lost", .. })
            {
                state.e2b_contexts.forget(&context_id);
            }
            return Err(e.into());
        }
    };
    let guard = InterruptOnDrop {
        state: state.clone(),
        caller: t.caller.clone(),
        session_id: t.session.id.clone(),
        context_id,
        ended: false,
    };
    let events = submitted.feed.follow(0);
    let body = futures_util::stream::unfold(
        (Box::pin(events), guard, 0usize, false),
        |(mut events, mut guard, mut shown, done)| async move {
            if done {
                return None;
            }
            loop {
                let (_, event) = events.next().await?;
                let chunk = match event {
                    FeedEvent::Output(ExecEvent::Stream(StreamEvent::Stdout { data })) => {
                        vec![line(json!({"type": "stdout", "text": data, "timestamp": now()}))]
                    }
                    FeedEvent::Output(ExecEvent::Stream(StreamEvent::Stderr { data })) => {
                        vec![line(json!({"type": "stderr", "text": data, "timestamp": now()}))]
                    }
                    FeedEvent::Output(ExecEvent::Display { output }) => {
                        shown += 1;
                        vec![line(result_line(&output))]
                    }
                    FeedEvent::Output(ExecEvent::Stream(_)) => continue,
                    FeedEvent::Done(e) => {
                        guard.ended = true;
                        let count = match guard
                            .state
                            .contexts
                            .get(&guard.caller, &guard.session_id, &guard.context_id)
                            .await
                        {
                            Ok(v) => v.info.map(|i| i.execution_count),
                            Err(_) => None,
                        };
                        let lines = ending(&e, shown, count);
                        let joined: Vec<u8> = lines.iter().flat_map(|b| b.iter().copied()).collect();
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(joined)),
                            (events, guard, shown, true),
                        ));
                    }
                    FeedEvent::Lost => {
                        guard.ended = true;
                        let lines = [line(json!({"type": "unexpected_end_of_execution"}))];
                        return Some((Ok(lines[0].clone()), (events, guard, shown, true)));
                    }
                };
                let joined: Vec<u8> = chunk.iter().flat_map(|b| b.iter().copied()).collect();
                return Some((Ok(Bytes::from(joined)), (events, guard, shown, false)));
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(body));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(resp)
}

/// `POST /contexts`'s body.
#[derive(Debug, Default, Deserialize)]
pub struct CreateContext {
    /// Its language (default python).
    language: Option<String>,
    /// Its working directory (under the home).
    cwd: Option<String>,
}

/// `POST /contexts`: a new context.
pub async fn create_context(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    raw: Bytes,
) -> Result<Json<E2bContext>, E2bError> {
    let req: CreateContext = if raw.is_empty() {
        CreateContext::default()
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| ApiError::bad_request("malformed_json", format!("invalid request body: {e}")))?
    };
    let lang = language(req.language.as_deref().unwrap_or("python"))?;
    let cwd = match req.cwd.as_deref().map(workspace_path).transpose()? {
        Some(p) if !p.is_root() => Some(p.as_str().to_owned()),
        _ => None,
    };
    let view = state
        .contexts
        .create(&t.caller, &t.session.id, NewContext { language: lang, cwd, env_vars: BTreeMap::new() })
        .await?;
    Ok(Json(E2bContext::from(&view)))
}

/// `GET /contexts`: the sandbox's contexts.
pub async fn list_contexts(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
) -> Result<Json<Vec<E2bContext>>, E2bError> {
    let views = state.contexts.list(&t.caller, &t.session.id).await?;
    Ok(Json(views.iter().map(E2bContext::from).collect()))
}

/// `DELETE /contexts/{id}`.
pub async fn delete_context(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    state.contexts.delete(&t.caller, &t.session.id, &id).await?;
    state.e2b_contexts.forget(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /contexts/{id}/restart`: a fresh interpreter.
pub async fn restart_context(
    State(state): State<AppState>,
    Extension(t): Extension<Target>,
    Path(id): Path<String>,
) -> Result<StatusCode, E2bError> {
    state.contexts.restart(&t.caller, &t.session.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_get_e2b_s_fields() {
        let out = DisplayOutput {
            data: [
                ("text/plain".to_owned(), Value::from("2")),
                ("image/png".to_owned(), Value::from("iVBOR")),
                ("application/vnd.custom".to_owned(), json!({"a": 1})),
            ]
            .into(),
            is_main_result: true,
            ..Default::default()
        };
        let v = result_line(&out);
        assert_eq!(v["type"], "result");
        assert_eq!(v["text"], "2");
        assert_eq!(v["png"], "iVBOR");
        assert_eq!(v["is_main_result"], true);
        assert_eq!(v["extra"]["application/vnd.custom"]["a"], 1);
    }

    #[test]
    fn lines_are_single_json_objects() {
        let l = line(json!({"type": "stdout", "text": "a\nb"}));
        assert_eq!(l.iter().filter(|b| **b == b'\n').count(), 1, "newlines inside are escaped");
        assert!(l.ends_with(b"\n") && !l.starts_with(b"\n"));
    }

    #[test]
    fn languages_map_both_ways() {
        assert_eq!(language("js").unwrap(), Language::Javascript);
        assert_eq!(language("Python").unwrap(), Language::Python);
        assert_eq!(language_name(language("bash").unwrap()), "bash");
        assert_eq!(language("r").unwrap_err().code, "language_unavailable");
    }
}
