//! `/mcp`: the Model Context Protocol over streamable HTTP, tools that act as the caller's API key
//! on the service layer.

mod args;
mod render;

use crate::api::e2b::interpreter::InterruptOnDrop;
use crate::api::error::ApiError;
use crate::api::files::parse_path;
use crate::caller::Caller;
use crate::service::contexts::NewContext;
use crate::service::dependencies::InstallRequest;
use crate::service::executions::NewExecution;
use crate::service::files::{Download, mime_type};
use crate::service::sessions::NewSession;
use crate::state::AppState;
use args::{
    CreateContextArgs, CreateSessionArgs, Encoding, InstallPackagesArgs, ListFilesArgs, ReadFileArgs,
    RunCodeArgs, SessionArgs, WriteFileArgs, requirement,
};
use axum::http::request::Parts;
use base64::Engine;
use bytes::Bytes;
use futures_util::TryStreamExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use sandbox_core::Language;
use sandbox_core::model::SessionStatus;
use sandbox_store::SessionFilter;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// `run_code`'s timeout when none is given, seconds.
const DEFAULT_RUN_TIMEOUT_SEC: u32 = 60;
/// How long `run_code` waits past the code's own timeout before answering with the execution as
/// it is (it is being stopped by then).
const RUN_GRACE: Duration = Duration::from_secs(15);
/// Entries `list_files` returns at most.
const MAX_LISTED: usize = 1000;

const INSTRUCTIONS: &str = "\
Runs code in isolated sandboxes (no network access). Start with create_session (list_templates \
shows what each template ships) and pass its session_id to the other tools. run_code keeps one \
interpreter per language per session, like notebook cells: variables, imports and functions \
persist between calls and the value of the last expression is returned; create_context gives \
further, separate interpreters. Files live under /workspace, shared by all interpreters of a \
session and by the file tools (paths are relative to it). Call terminate_session when done.";

/// The MCP service for the router: stateless streamable HTTP (every POST carries its own
/// request; no MCP session is kept), answered as JSON when the tool sends nothing before its
/// result. The caller is the one the authentication middleware put on each request.
pub fn service(state: AppState) -> StreamableHttpService<SandboxMcp, NeverSessionManager> {
    let limit = state.settings.limits.max_request_bytes;
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(limit)
        // Any Host: the API is served under whatever name a deployment gives it, and each
        // request must carry an API key, which a page rebinding DNS cannot.
        .disable_allowed_hosts();
    StreamableHttpService::new(move || Ok(SandboxMcp::new(state.clone())), Default::default(), config)
}

/// The tools, over the application's services.
#[derive(Clone)]
pub struct SandboxMcp {
    state: AppState,
    tool_router: ToolRouter<Self>,
}

impl SandboxMcp {
    fn new(state: AppState) -> Self {
        SandboxMcp { state, tool_router: Self::tool_router() }
    }

    /// Runs a tool as the request's caller: its refusals become tool errors (`code: message`),
    /// and every call is logged with its outcome (in the request's span, which names the key)
    /// and counted (`sandbox_mcp_tool_calls`).
    async fn call<F, Fut>(&self, tool: &'static str, parts: &Parts, f: F) -> Result<CallToolResult, ErrorData>
    where
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<CallToolResult, ApiError>>,
    {
        let caller =
            parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
                ErrorData::internal_error("the request carries no authenticated caller", None)
            })?;
        let start = Instant::now();
        let outcome = f(caller).await;
        let elapsed_ms = start.elapsed().as_millis() as u64;
        Ok(match outcome {
            Ok(result) => {
                self.state.metrics.mcp_tool_call(tool, "ok");
                tracing::info!(tool, elapsed_ms, "mcp tool call");
                result
            }
            Err(e) => {
                self.state.metrics.mcp_tool_call(tool, e.code);
                tracing::info!(tool, elapsed_ms, code = e.code, error = %e.message, "mcp tool call refused");
                render::tool_error(&e)
            }
        })
    }

    /// The session's default context of `language`, started on first use (the same one the
    /// E2B-compatible API uses).
    async fn default_context(
        &self,
        caller: &Caller,
        session_id: &str,
        language: Language,
    ) -> Result<String, ApiError> {
        let defaults = &self.state.e2b_contexts;
        if let Some(id) = defaults.get(session_id, language) {
            return Ok(id);
        }
        let new = NewContext { language, cwd: None, env_vars: BTreeMap::new() };
        let view = self.state.contexts.create(caller, session_id, new).await?;
        defaults.set(session_id, language, &view.record.id);
        Ok(view.record.id)
    }

    async fn run(
        &self,
        caller: Caller,
        a: RunCodeArgs,
        gone: CancellationToken,
    ) -> Result<CallToolResult, ApiError> {
        if a.code.is_empty() {
            return Err(ApiError::invalid_field("code", "must not be empty"));
        }
        let language = a.language.map(Language::from);
        let (context_id, own) = match a.context_id {
            Some(id) => (id, true),
            None => {
                let language = language.unwrap_or(Language::Python);
                (self.default_context(&caller, &a.session_id, language).await?, false)
            }
        };
        let timeout_sec = a.timeout.unwrap_or(DEFAULT_RUN_TIMEOUT_SEC);
        let new = NewExecution {
            code: a.code,
            language,
            context_id: Some(context_id.clone()),
            timeout_sec,
            event: None,
        };
        let submitted = match self.state.executions.submit(&caller, &a.session_id, new).await {
            Ok(s) => s,
            Err(e) => {
                let lost =
                    matches!(&e, crate::service::error::ServiceError::Conflict { code: "context_lost", .. });
                if !own && (lost || matches!(e, crate::service::error::ServiceError::NotFound { .. })) {
                    // The next call starts a fresh default context.
                    self.state.e2b_contexts.forget(&context_id);
                }
                return Err(e.into());
            }
        };
        let id = submitted.execution.id.clone();
        // A client that goes away (the HTTP request dropped, the call cancelled) stops the cell:
        // the guard interrupts it when this future is dropped, or when `gone` fires first.
        let mut guard = InterruptOnDrop {
            state: self.state.clone(),
            caller: caller.clone(),
            session_id: a.session_id.clone(),
            context_id: context_id.clone(),
            ended: false,
        };
        let wait = Duration::from_secs(u64::from(timeout_sec)) + RUN_GRACE;
        let finished = tokio::select! {
            finished = tokio::time::timeout(wait, submitted.done) => finished,
            () = gone.cancelled() => {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "cancelled",
                    "the client went away; the code was interrupted",
                ));
            }
        };
        guard.ended = true;
        let execution = match finished {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => return Err(ApiError::internal(e)),
            Err(_) => self.state.executions.get(&caller, &id).await?.0,
        };
        let context =
            if own { format!("context {context_id}") } else { format!("default context {context_id}") };
        Ok(render::execution(&execution, &context))
    }

    async fn read(&self, caller: Caller, a: ReadFileArgs) -> Result<CallToolResult, ApiError> {
        let path = parse_path(&a.path, false)?;
        let (size, stream) = match self.state.files.download(&caller, &a.session_id, &path).await? {
            Download::Content { size, bytes } => (size, bytes),
            Download::Redirect(url) => {
                return Ok(render::text(format!(
                    "{} is too large to return here; download it from {url}",
                    path.as_str()
                )));
            }
        };
        let mime = mime_type(path.as_str());
        let is_text = mime.starts_with("text/") || mime == "application/json";
        if !is_text && size > render::MAX_FILE_BINARY {
            return Err(ApiError::too_large(
                "file_too_large",
                format!(
                    "{} is {size} bytes; binary files are returned up to {} bytes (read a part with run_code)",
                    path.as_str(),
                    render::MAX_FILE_BINARY
                ),
            ));
        }
        // Text is cut after this many bytes anyway: read no more than that.
        let keep = if is_text { render::MAX_FILE_TEXT as u64 + 4 } else { size };
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(keep)).unwrap_or(0));
        let mut stream = stream;
        while let Some(chunk) = stream.try_next().await.map_err(ApiError::internal)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 >= keep {
                break;
            }
        }
        let mut result = render::file(&a.session_id, path.as_str(), &mime, &bytes);
        if (bytes.len() as u64) < size {
            result.content.push(rmcp::model::ContentBlock::text(format!(
                "[{} is {size} bytes; only the first part was read]",
                path.as_str()
            )));
        }
        Ok(result)
    }

    async fn write(&self, caller: Caller, a: WriteFileArgs) -> Result<CallToolResult, ApiError> {
        let path = parse_path(&a.path, false)?;
        let bytes = match a.encoding {
            Encoding::Text => Bytes::from(a.content),
            Encoding::Base64 => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(a.content.trim())
                    .map_err(|e| ApiError::invalid_field("content", format!("is not valid base64: {e}")))?,
            ),
        };
        let limit = self.state.settings.limits.max_upload_mb << 20;
        if bytes.len() as u64 > limit {
            return Err(ApiError::too_large(
                "payload_too_large",
                format!("files are limited to {} MiB", limit >> 20),
            ));
        }
        let target = self.state.files.upload_target(&caller, &a.session_id).await?;
        let stream = Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
        let size = self.state.files.write(&target, &path, stream).await?;
        self.state.files.commit(&target, &path).await?;
        Ok(render::text(format!("wrote {size} bytes to /workspace/{}", path.as_str())))
    }
}

#[tool_router]
impl SandboxMcp {
    /// Start a new sandbox session (an isolated container with its own workspace, no network)
    /// and return its id for the other tools. Takes a few seconds, longer with packages to
    /// install. Each session costs resources: reuse one for a task and end it with
    /// terminate_session. Sessions end by themselves after their idle timeout.
    #[tool]
    async fn create_session(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<CreateSessionArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("create_session", &parts, |caller| async move {
            let new = NewSession {
                id: None,
                template_id: a.template.unwrap_or_else(|| "python-basic".into()),
                timeout: a.idle_timeout,
                cpu: None,
                memory: None,
                disk: None,
                env_vars: BTreeMap::new(),
                metadata: BTreeMap::new(),
                dependencies: a.python_packages.iter().map(|p| requirement(p)).collect(),
                python_package_index_url: None,
                install_timeout: None,
                fail_on_dependency_error: true,
                allow_version_conflicts: false,
                source_session_id: None,
                network: Default::default(),
            };
            let s = self.state.sessions.create(&caller, new, true).await?;
            Ok(render::text(render::session(&s)))
        })
        .await
    }

    /// Run code in a session and return its status, stdout, stderr, the error (exception and
    /// traceback) if it raised, and its results: the value of the last expression and
    /// displayed outputs as text, images (matplotlib figures, PNG/JPEG) as image content.
    /// State persists: without context_id the code runs in the session's default interpreter
    /// for its language, so variables, imports and functions defined in one call are there in
    /// the next (like notebook cells); with context_id it runs in that context instead. The
    /// call waits for the code to finish (up to timeout seconds, default 60; the deployment
    /// caps it). Long outputs are cut to 20000 characters per stream. Code that fails is not a
    /// tool error: read the status and error.
    #[tool]
    async fn run_code(
        &self,
        Extension(parts): Extension<Parts>,
        gone: CancellationToken,
        Parameters(a): Parameters<RunCodeArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("run_code", &parts, |caller| self.run(caller, a, gone)).await
    }

    /// Start another interpreter (code context) in a session and return its id for run_code's
    /// context_id: a fresh namespace of its own, for work that must not share variables with
    /// the default one, or a different working directory. Most tasks need none.
    #[tool]
    async fn create_context(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<CreateContextArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("create_context", &parts, |caller| async move {
            let new = NewContext { language: a.language.into(), cwd: a.cwd, env_vars: BTreeMap::new() };
            let view = self.state.contexts.create(&caller, &a.session_id, new).await?;
            Ok(render::text(format!(
                "context {} ({}) started in session {}",
                view.record.id,
                view.record.language.as_str(),
                a.session_id
            )))
        })
        .await
    }

    /// List the files and directories under a workspace directory (the whole workspace by
    /// default), recursively, with sizes; at most 1000 entries.
    #[tool(annotations(read_only_hint = true))]
    async fn list_files(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<ListFilesArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("list_files", &parts, |caller| async move {
            let dir = parse_path(a.path.as_deref().unwrap_or(""), true)?;
            let listing = self.state.files.list(&caller, &a.session_id, &dir, None, 0, MAX_LISTED).await?;
            let mut lines: Vec<String> = listing
                .entries
                .iter()
                .map(|e| match e.kind {
                    sandbox_protocol::files::FileKind::Directory => format!("{}/", e.path.as_str()),
                    _ => format!("{}  ({} bytes)", e.path.as_str(), e.size),
                })
                .collect();
            if lines.is_empty() {
                lines.push("(no files)".into());
            }
            if listing.truncated {
                lines.push(format!("[only the first {MAX_LISTED} entries are shown]"));
            }
            Ok(render::text(lines.join("\n")))
        })
        .await
    }

    /// Read a workspace file: text files as text (up to 100000 bytes), images (PNG, JPEG, GIF,
    /// WebP) as image content, other binary files as an embedded base64 resource (up to 5 MiB).
    #[tool(annotations(read_only_hint = true))]
    async fn read_file(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<ReadFileArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("read_file", &parts, |caller| self.read(caller, a)).await
    }

    /// Write a workspace file, creating missing directories and replacing a file that is there:
    /// text as is, or binary content given as base64 with encoding "base64". The code of every
    /// interpreter of the session sees it at once.
    #[tool]
    async fn write_file(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<WriteFileArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("write_file", &parts, |caller| self.write(caller, a)).await
    }

    /// Install Python packages into a running session (pip, from the package index configured
    /// for the deployment; the sandbox itself has no network). Waits until they are installed;
    /// code run afterwards can import them (restart nothing). Returns the session's packages.
    #[tool]
    async fn install_packages(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<InstallPackagesArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("install_packages", &parts, |caller| async move {
            if a.packages.is_empty() || a.packages.len() > 50 {
                return Err(ApiError::invalid_field("packages", "give 1 to 50 packages"));
            }
            let specs = a.packages.iter().map(|p| requirement(p)).collect();
            let request = InstallRequest { new: specs, index_url: None, allow_conflicts: false };
            let installing =
                self.state.sessions.install_dependencies(&caller, &a.session_id, request, None).await?;
            let s = installing.finish().await?;
            Ok(render::text(render::session(&s)))
        })
        .await
    }

    /// List the templates sessions can be started from: id, description, language runtime and
    /// the Python packages each ships.
    #[tool(annotations(read_only_hint = true))]
    async fn list_templates(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        self.call("list_templates", &parts, |_| async move {
            let page = self.state.templates.list(100, 0).await?;
            let lines: Vec<String> = page
                .items
                .iter()
                .filter(|t| t.is_active)
                .map(|t| {
                    let mut line = format!("{}: {} ({})", t.id, t.name, t.language_runtime);
                    if !t.pre_installed_packages.is_empty() {
                        line.push_str(&format!("; packages: {}", t.pre_installed_packages.join(", ")));
                    }
                    line
                })
                .collect();
            Ok(render::text(lines.join("\n")))
        })
        .await
    }

    /// List this API key's running sessions (id, template, status), newest first; at most 100.
    #[tool(annotations(read_only_hint = true))]
    async fn list_sessions(&self, Extension(parts): Extension<Parts>) -> Result<CallToolResult, ErrorData> {
        self.call("list_sessions", &parts, |caller| async move {
            let filter = SessionFilter {
                owner_key_id: None,
                status: Some(SessionStatus::Running),
                template_id: None,
                limit: 100,
                offset: 0,
            };
            let page = self.state.sessions.list(&caller, filter).await?;
            let lines: Vec<String> = page.items.iter().map(render::session).collect();
            Ok(render::text(if lines.is_empty() { "no running sessions".into() } else { lines.join("\n") }))
        })
        .await
    }

    /// End a session: its sandbox stops, and its interpreters and their state are gone. Call it
    /// when the task is done. Ending a session that has ended already is not an error.
    #[tool(annotations(destructive_hint = true, idempotent_hint = true))]
    async fn terminate_session(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(a): Parameters<SessionArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.call("terminate_session", &parts, |caller| async move {
            let s = self.state.sessions.terminate(&caller, &a.session_id).await?;
            Ok(render::text(render::session(&s)))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SandboxMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("sandbox", crate::api::health::VERSION))
            .with_instructions(INSTRUCTIONS)
    }
}
