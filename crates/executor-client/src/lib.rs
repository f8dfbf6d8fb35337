//! Talks to a sandbox's executor: over its Unix socket (Docker) or over TCP with a bearer token
//! (Kubernetes). Connections are kept alive and reused.

mod transport;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{Method, Request, header};
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use sandbox_core::WorkspacePath;
use sandbox_protocol::{
    ArchiveSummary, ContextInfo, ContextRequest, DirCreated, ErrorBody, ErrorCode, ExecEvent, ExecMode,
    ExecRequest, ExecResult, ExecutionRecord, ExecutionSummary, FileEntry, FileList, Health, MoveRequest,
    PROTOCOL_VERSION, ProcessEvent, ProcessInfo, ProcessRequest, ProcessSignal, PtySize, SignalRequest,
    SpareInfo, StreamEvent, WatchEvent, WatchRequest, WatcherEvents, WatcherInfo, paths,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
pub use transport::Endpoint;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The executor could not be reached, or the connection broke.
    #[error("executor unreachable: {0}")]
    Unreachable(String),
    /// The executor answered with an error.
    #[error("executor refused ({status}): {body}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error it sent.
        body: ErrorBody,
    },
    /// The executor's answer was not what the protocol says.
    #[error("unexpected answer from the executor: {0}")]
    Protocol(String),
    /// The executor speaks another protocol version.
    #[error("executor speaks protocol {found}, this client speaks {PROTOCOL_VERSION}")]
    IncompatibleProtocol {
        /// The executor's version.
        found: u32,
    },
}

impl ClientError {
    /// The executor's error body, when it sent one.
    pub fn api_error(&self) -> Option<&ErrorBody> {
        match self {
            ClientError::Api { body, .. } => Some(body),
            _ => None,
        }
    }
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;
/// A process's events, as [`ExecutorClient::start_process`] and
/// [`ExecutorClient::process_events`] yield them.
pub type ProcessEvents = Pin<Box<dyn Stream<Item = Result<ProcessEvent, ClientError>> + Send>>;
/// A stream of bytes, such as a file's content.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;
/// The events of a directory watch, `start` first; dropping it stops the watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, ClientError>> + Send>>;

/// A client for one executor.
#[derive(Clone)]
pub struct ExecutorClient {
    http: Client<transport::Connector, Body>,
    token: Option<String>,
    authority: String,
}

#[derive(Serialize)]
struct FileQuery<'a> {
    path: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    recursive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    depth: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<usize>,
}

impl ExecutorClient {
    /// A client for the executor listening on the Unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::new(Endpoint::Unix(path.into(), None), None)
    }

    /// A client for the executor on the Unix socket at `path` that talks only to a listener
    /// running as `uid` (the sandbox's): anything else put in the socket's place, such as a link
    /// to another service's socket, is refused before a byte is sent.
    pub fn unix_served_by(path: impl Into<PathBuf>, uid: u32) -> Self {
        Self::new(Endpoint::Unix(path.into(), Some(uid)), None)
    }

    /// A client for the executor at `addr`, authenticating with `token`.
    pub fn tcp(addr: SocketAddr, token: String) -> Self {
        Self::new(Endpoint::Tcp(addr), Some(token))
    }

    fn new(endpoint: Endpoint, token: Option<String>) -> Self {
        let authority = match &endpoint {
            Endpoint::Unix(..) => "executor".to_owned(),
            Endpoint::Tcp(a) => a.to_string(),
        };
        let http = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(transport::Connector::new(endpoint));
        ExecutorClient { http, token, authority }
    }

    fn request(&self, method: Method, path_and_query: &str, body: Body) -> Request<Body> {
        let mut b =
            Request::builder().method(method).uri(format!("http://{}{}", self.authority, path_and_query));
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(body).expect("request parts are valid")
    }

    async fn send(&self, req: Request<Body>) -> Result<http::Response<Incoming>, ClientError> {
        let resp = self.http.request(req).await.map_err(|e| ClientError::Unreachable(error_chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes =
            resp.into_body().collect().await.map_err(|e| ClientError::Unreachable(e.to_string()))?.to_bytes();
        let body = serde_json::from_slice(&bytes).map_err(|_| {
            ClientError::Protocol(format!("status {status} with body {:?}", String::from_utf8_lossy(&bytes)))
        })?;
        Err(ClientError::Api { status, body })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        pq: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let has_body = body.is_some();
        let mut req = self.request(method, pq, full(body.unwrap_or_default()));
        if has_body {
            req.headers_mut()
                .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        }
        let resp = self.send(req).await?;
        let bytes =
            resp.into_body().collect().await.map_err(|e| ClientError::Unreachable(e.to_string()))?.to_bytes();
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
    }

    async fn call_empty(&self, method: Method, pq: &str) -> Result<(), ClientError> {
        self.send_empty(self.request(method, pq, full(Vec::new()))).await
    }

    /// `POST`s JSON to an endpoint that answers without a body.
    async fn post_json_empty<T: Serialize>(&self, pq: &str, body: &T) -> Result<(), ClientError> {
        let mut req = self.request(Method::POST, pq, full(to_json(body)));
        req.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        self.send_empty(req).await
    }

    async fn send_empty(&self, req: Request<Body>) -> Result<(), ClientError> {
        let resp = self.send(req).await?;
        resp.into_body().collect().await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(())
    }

    /// The executor's health; fails if it speaks another protocol version.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let h: Health = self.call(Method::GET, paths::HEALTH, None).await?;
        if h.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::IncompatibleProtocol { found: h.protocol_version });
        }
        Ok(h)
    }

    /// Runs an execution and waits for its result.
    pub async fn execute(&self, req: &ExecRequest) -> Result<ExecResult, ClientError> {
        self.submit(paths::EXECUTIONS, req, ExecMode::Wait).await
    }

    /// Starts an execution without waiting for it.
    pub async fn start(&self, req: &ExecRequest) -> Result<ExecutionRecord, ClientError> {
        self.submit(paths::EXECUTIONS, req, ExecMode::Detach).await
    }

    /// Runs an execution, yielding output chunks as they happen and the result last. Display
    /// outputs are in the result only; [`execute_events`](Self::execute_events) streams them
    /// too.
    pub async fn execute_stream(
        &self,
        req: &ExecRequest,
    ) -> Result<impl Stream<Item = Result<StreamEvent, ClientError>> + Send + use<>, ClientError> {
        let events = self.events(paths::EXECUTIONS, req).await?;
        Ok(events.try_filter_map(|e| async move {
            Ok(match e {
                ExecEvent::Stream(e) => Some(e),
                ExecEvent::Display { .. } => None,
            })
        }))
    }

    /// Runs an execution, yielding output chunks and display outputs as they happen and the
    /// result last.
    pub async fn execute_events(
        &self,
        req: &ExecRequest,
    ) -> Result<impl Stream<Item = Result<ExecEvent, ClientError>> + Send + use<>, ClientError> {
        self.events(paths::EXECUTIONS, req).await
    }

    /// Runs an execution as the next cell of context `context_id` and waits for its result.
    /// Refused with `context_busy` while another runs there, `context_lost` when the context's
    /// interpreter is gone.
    pub async fn execute_in(&self, context_id: &str, req: &ExecRequest) -> Result<ExecResult, ClientError> {
        self.submit(&paths::context_executions(context_id), req, ExecMode::Wait).await
    }

    /// Starts an execution in context `context_id` without waiting for it.
    pub async fn start_in(
        &self,
        context_id: &str,
        req: &ExecRequest,
    ) -> Result<ExecutionRecord, ClientError> {
        self.submit(&paths::context_executions(context_id), req, ExecMode::Detach).await
    }

    /// Runs an execution in context `context_id`, yielding output chunks and display outputs as
    /// they happen and the result last.
    pub async fn execute_events_in(
        &self,
        context_id: &str,
        req: &ExecRequest,
    ) -> Result<impl Stream<Item = Result<ExecEvent, ClientError>> + Send + use<>, ClientError> {
        self.events(&paths::context_executions(context_id), req).await
    }

    async fn submit<T: DeserializeOwned>(
        &self,
        path: &str,
        req: &ExecRequest,
        mode: ExecMode,
    ) -> Result<T, ClientError> {
        let req = ExecRequest { mode, ..req.clone() };
        self.call(Method::POST, path, Some(to_json(&req))).await
    }

    async fn events(
        &self,
        path: &str,
        req: &ExecRequest,
    ) -> Result<impl Stream<Item = Result<ExecEvent, ClientError>> + Send + use<>, ClientError> {
        let req = ExecRequest { mode: ExecMode::Stream, ..req.clone() };
        self.lines(Method::POST, path, Some(to_json(&req))).await
    }

    /// Sends a request whose answer is one JSON value per line, and parses the lines.
    async fn lines<T: DeserializeOwned + Send + 'static>(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<impl Stream<Item = Result<T, ClientError>> + Send + use<T>, ClientError> {
        let has_body = json.is_some();
        let mut http_req = self.request(method, path, full(json.unwrap_or_default()));
        if has_body {
            http_req
                .headers_mut()
                .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        }
        let resp = self.send(http_req).await?;
        let bytes = BodyStream::new(resp.into_body())
            .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
            .map_err(|e| ClientError::Unreachable(e.to_string()));
        Ok(ndjson_lines(bytes))
    }

    /// Starts a process in a sandbox of its own; yields its events, `start` first and `end`
    /// last. Dropping the stream leaves the process running.
    pub async fn start_process(&self, req: &ProcessRequest) -> Result<ProcessEvents, ClientError> {
        Ok(Box::pin(self.lines(Method::POST, paths::PROCESSES, Some(to_json(req))).await?))
    }

    /// Every process the executor knows, running or recently exited.
    pub async fn processes(&self) -> Result<Vec<ProcessInfo>, ClientError> {
        self.call(Method::GET, paths::PROCESSES, None).await
    }

    /// One process; fails with `process_not_found` if the executor does not know it.
    pub async fn process(&self, pid: u32) -> Result<ProcessInfo, ClientError> {
        self.call(Method::GET, &paths::process(pid), None).await
    }

    /// A process's events from now on: `start`, the output it writes from now, `end` (at once
    /// for an exited process).
    pub async fn process_events(&self, pid: u32) -> Result<ProcessEvents, ClientError> {
        Ok(Box::pin(self.lines(Method::GET, &paths::process_stream(pid), None).await?))
    }

    /// Writes bytes to a process's standard input.
    pub async fn write_stdin(&self, pid: u32, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send_empty(self.request(Method::POST, &paths::process_stdin(pid), full(bytes))).await
    }

    /// Closes a process's standard input.
    pub async fn close_stdin(&self, pid: u32) -> Result<(), ClientError> {
        self.call_empty(Method::POST, &paths::process_stdin_close(pid)).await
    }

    /// Sends a signal to every process of a process's tree.
    pub async fn signal_process(&self, pid: u32, signal: ProcessSignal) -> Result<(), ClientError> {
        self.post_json_empty(&paths::process_signal(pid), &SignalRequest { signal }).await
    }

    /// Resizes a process's terminal.
    pub async fn resize_pty(&self, pid: u32, size: PtySize) -> Result<(), ClientError> {
        self.post_json_empty(&paths::process_pty(pid), &size).await
    }

    /// Starts a context (or, for an id it knows, answers with that context).
    pub async fn create_context(&self, req: &ContextRequest) -> Result<ContextInfo, ClientError> {
        self.call(Method::POST, paths::CONTEXTS, Some(to_json(req))).await
    }

    /// Every context the executor knows.
    pub async fn contexts(&self) -> Result<Vec<ContextInfo>, ClientError> {
        self.call(Method::GET, paths::CONTEXTS, None).await
    }

    /// One context; `None` if the executor does not know it.
    pub async fn context(&self, id: &str) -> Result<Option<ContextInfo>, ClientError> {
        match self.call(Method::GET, &paths::context(id), None).await {
            Ok(c) => Ok(Some(c)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ends a context's interpreter and forgets the context.
    pub async fn delete_context(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &paths::context(id)).await
    }

    /// Replaces a context's interpreter with a fresh one (a lost or expired context comes back
    /// this way).
    pub async fn restart_context(&self, id: &str) -> Result<ContextInfo, ClientError> {
        self.call(Method::POST, &paths::context_restart(id), None).await
    }

    /// Interrupts the execution running in a context, if any.
    pub async fn interrupt_context(&self, id: &str) -> Result<ContextInfo, ClientError> {
        self.call(Method::POST, &paths::context_interrupt(id), None).await
    }

    /// The pre-started interpreters waiting for executions.
    pub async fn spares(&self) -> Result<Vec<SpareInfo>, ClientError> {
        self.call(Method::GET, paths::SPARES, None).await
    }

    /// One execution's state; `None` if the executor does not know it.
    pub async fn execution(&self, id: &str) -> Result<Option<ExecutionRecord>, ClientError> {
        match self.call(Method::GET, &paths::execution(id), None).await {
            Ok(r) => Ok(Some(r)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every execution the executor knows.
    pub async fn executions(&self) -> Result<Vec<ExecutionSummary>, ClientError> {
        self.call(Method::GET, paths::EXECUTIONS, None).await
    }

    /// Tells the executor a finished result has been stored and may be dropped.
    pub async fn forget(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &paths::execution(id)).await
    }

    /// Kills a running execution.
    pub async fn kill(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(Method::POST, &paths::execution_kill(id)).await
    }

    fn files_uri(base: &str, path: &WorkspacePath, recursive: bool, limit: Option<usize>) -> String {
        let q = serde_urlencoded::to_string(FileQuery {
            path: path.as_str(),
            recursive,
            depth: None,
            limit,
            offset: None,
        })
        .unwrap_or_default();
        format!("{base}?{q}")
    }

    /// Lists a directory (and below it when `recursive`).
    pub async fn list_files(
        &self,
        path: &WorkspacePath,
        recursive: bool,
        limit: Option<usize>,
    ) -> Result<FileList, ClientError> {
        self.call(Method::GET, &Self::files_uri(paths::FILES, path, recursive, limit), None).await
    }

    /// Lists a directory down to `depth` levels (0 and 1: its own entries only; `usize::MAX`
    /// every level), skipping the walk's first `offset` entries, at most `limit` entries (1000
    /// when `None`). A missing directory is `not_found`, anything else than a directory
    /// `not_a_directory`, a path leading outside the workspace `invalid_path`.
    pub async fn list_dir(
        &self,
        path: &WorkspacePath,
        depth: usize,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<FileList, ClientError> {
        let offset = (offset > 0).then_some(offset);
        let q = FileQuery { path: path.as_str(), recursive: false, depth: Some(depth), limit, offset };
        let uri = format!("{}?{}", paths::FILES, serde_urlencoded::to_string(q).unwrap_or_default());
        self.call(Method::GET, &uri, None).await
    }

    /// Describes one entry (a symlink itself, with its target, never what it points to).
    pub async fn stat(&self, path: &WorkspacePath) -> Result<FileEntry, ClientError> {
        self.call(Method::GET, &Self::files_uri(paths::FILES_STAT, path, false, None), None).await
    }

    /// Creates a directory and its parents; says whether it existed already. Something other
    /// than a directory in its place is `not_a_directory`.
    pub async fn mkdir(&self, path: &WorkspacePath) -> Result<DirCreated, ClientError> {
        self.call(Method::POST, &Self::files_uri(paths::FILES_MKDIR, path, false, None), None).await
    }

    /// Renames `source` to `destination` (see [`MoveRequest`] for what may be replaced) and
    /// describes the entry at its new path.
    pub async fn rename(
        &self,
        source: &WorkspacePath,
        destination: &WorkspacePath,
    ) -> Result<FileEntry, ClientError> {
        let body = MoveRequest { source: source.clone(), destination: destination.clone() };
        self.call(Method::POST, paths::FILES_MOVE, Some(to_json(&body))).await
    }

    /// Removes a file, or a directory (with its contents when `recursive`).
    pub async fn delete(&self, path: &WorkspacePath, recursive: bool) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &Self::files_uri(paths::FILES, path, recursive, None)).await
    }

    /// Removes a file or a directory with everything in it; a path that does not exist is not
    /// an error. Says whether something was removed.
    pub async fn remove_all(&self, path: &WorkspacePath) -> Result<bool, ClientError> {
        match self.delete(path, true).await {
            Ok(()) => Ok(true),
            Err(e) if e.api_error().is_some_and(|b| b.code == ErrorCode::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Watches directory `path` (and the directories below it, including later ones, when
    /// `recursive`). Returns once the watch is in place: its first event, `start`, has come.
    /// Names in events are relative to `path`. Dropping the stream stops the watch.
    pub async fn watch(&self, path: &WorkspacePath, recursive: bool) -> Result<WatchStream, ClientError> {
        let q = serde_urlencoded::to_string(FileQuery {
            path: path.as_str(),
            recursive,
            depth: None,
            limit: None,
            offset: None,
        })
        .unwrap_or_default();
        let resp = self
            .send(self.request(Method::GET, &format!("{}?{q}", paths::FILES_WATCH), full(Vec::new())))
            .await?;
        let bytes = BodyStream::new(resp.into_body())
            .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
            .map_err(|e| ClientError::Unreachable(e.to_string()));
        let mut events = Box::pin(ndjson_lines::<WatchEvent>(bytes));
        match events.next().await {
            Some(Ok(WatchEvent::Start)) => {
                Ok(Box::pin(futures_util::stream::once(async { Ok(WatchEvent::Start) }).chain(events)))
            }
            Some(Err(e)) => Err(e),
            other => Err(ClientError::Protocol(format!("a watch began with {other:?}, not start"))),
        }
    }

    /// Starts a polling watcher of directory `path`; its events are collected until
    /// [`watcher_events`](Self::watcher_events) takes them.
    pub async fn create_watcher(
        &self,
        path: &WorkspacePath,
        recursive: bool,
    ) -> Result<WatcherInfo, ClientError> {
        let body = WatchRequest { path: path.clone(), recursive };
        self.call(Method::POST, paths::WATCHERS, Some(to_json(&body))).await
    }

    /// The polling watchers.
    pub async fn watchers(&self) -> Result<Vec<WatcherInfo>, ClientError> {
        self.call(Method::GET, paths::WATCHERS, None).await
    }

    /// A polling watcher's events since the previous call, oldest first.
    pub async fn watcher_events(&self, id: &str) -> Result<Vec<WatchEvent>, ClientError> {
        let got: WatcherEvents = self.call(Method::GET, &paths::watcher_events(id), None).await?;
        Ok(got.events)
    }

    /// Stops a polling watcher.
    pub async fn remove_watcher(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, &paths::watcher(id)).await
    }

    /// Streams a file's content; returns its size and the bytes.
    pub async fn read_file(&self, path: &WorkspacePath) -> Result<(u64, ByteStream), ClientError> {
        let uri = Self::files_uri(paths::FILES_CONTENT, path, false, None);
        let resp = self.send(self.request(Method::GET, &uri, full(Vec::new()))).await?;
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| ClientError::Protocol("file without Content-Length".into()))?;
        Ok((size, body_stream(resp)))
    }

    /// Streams the whole workspace as a tar archive (symlinks as symlinks, special files left
    /// out). A stream that ends in an error was cut short: its archive is incomplete.
    pub async fn archive(&self) -> Result<ByteStream, ClientError> {
        let resp = self.send(self.request(Method::GET, paths::WORKSPACE_ARCHIVE, full(Vec::new()))).await?;
        Ok(body_stream(resp))
    }

    /// Extracts a tar archive into the workspace.
    pub async fn extract(&self, archive: ByteStream) -> Result<ArchiveSummary, ClientError> {
        self.put_stream(paths::WORKSPACE_ARCHIVE, archive).await
    }

    /// Writes a file from a stream of bytes (parents are created; the file replaces any
    /// existing one only once fully written).
    pub async fn write_file(
        &self,
        path: &WorkspacePath,
        content: ByteStream,
    ) -> Result<FileEntry, ClientError> {
        let uri = Self::files_uri(paths::FILES_CONTENT, path, false, None);
        self.put_stream(&uri, content).await
    }

    /// `PUT`s a stream of bytes and reads the JSON answer.
    async fn put_stream<T: serde::de::DeserializeOwned>(
        &self,
        uri: &str,
        content: ByteStream,
    ) -> Result<T, ClientError> {
        let body = StreamBody::new(content.map_ok(Frame::data));
        let resp = self.send(self.request(Method::PUT, uri, BodyExt::boxed_unsync(body))).await?;
        let bytes =
            resp.into_body().collect().await.map_err(|e| ClientError::Unreachable(e.to_string()))?.to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// A response's body as a stream of byte chunks.
fn body_stream(resp: http::Response<Incoming>) -> ByteStream {
    let stream = BodyStream::new(resp.into_body())
        .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
        .map_err(std::io::Error::other);
    Box::pin(stream)
}

fn full(bytes: Vec<u8>) -> Body {
    BodyExt::boxed_unsync(Full::new(Bytes::from(bytes)).map_err(|never| match never {}))
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("protocol types serialise")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Splits a byte stream into lines and parses each as a `T` ([`ExecEvent`], [`ProcessEvent`],
/// [`WatchEvent`]).
fn ndjson_lines<T: DeserializeOwned + Send + 'static>(
    bytes: impl Stream<Item = Result<Bytes, ClientError>> + Send + 'static,
) -> impl Stream<Item = Result<T, ClientError>> + Send {
    futures_util::stream::unfold(
        (Box::pin(bytes), Vec::<u8>::new(), false),
        |(mut bytes, mut buf, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let ev = serde_json::from_slice(&line[..line.len() - 1])
                        .map_err(|e| ClientError::Protocol(format!("bad stream line: {e}")));
                    return Some((ev, (bytes, buf, done)));
                }
                if done {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        done = true;
                        return Some((Err(e), (bytes, buf, done)));
                    }
                    None => {
                        done = true;
                        if !buf.is_empty() {
                            return Some((
                                Err(ClientError::Protocol("stream ended mid-line".into())),
                                (bytes, Vec::new(), done),
                            ));
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_protocol::DisplayOutput;

    /// Lines split anywhere across chunks come out whole and in order, display outputs among
    /// them; a line cut off by the end of the stream is an error, not an event.
    #[tokio::test]
    async fn stream_lines_become_events() {
        let display = ExecEvent::Display {
            output: DisplayOutput {
                data: [("text/html".to_owned(), serde_json::json!("<b>x</b>"))].into(),
                ..Default::default()
            },
        };
        let stdout = ExecEvent::from(StreamEvent::Stdout { data: "hi\n".into() });
        let mut body = Vec::new();
        for e in [&stdout, &display, &stdout] {
            body.extend(serde_json::to_vec(e).unwrap());
            body.push(b'\n');
        }
        body.extend(b"{\"type\":\"std");
        let chunks: Vec<Result<Bytes, ClientError>> =
            body.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let events: Vec<_> = ndjson_lines::<ExecEvent>(futures_util::stream::iter(chunks)).collect().await;
        assert_eq!(events.len(), 4);
        let parsed: Vec<&ExecEvent> = events[..3].iter().map(|e| e.as_ref().unwrap()).collect();
        assert_eq!(parsed, [&stdout, &display, &stdout]);
        assert!(matches!(&events[3], Err(ClientError::Protocol(m)) if m.contains("mid-line")));
    }
}
