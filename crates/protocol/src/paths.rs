//! The executor's HTTP routes, named once for both ends.

/// `GET`: [`Health`](crate::Health).
pub const HEALTH: &str = "/v1/health";
/// `POST` an [`ExecRequest`](crate::ExecRequest); `GET` lists [`ExecutionSummary`](crate::ExecutionSummary).
pub const EXECUTIONS: &str = "/v1/executions";
/// `POST /v1/files/mkdir?path=`: create a directory and its parents; answers a
/// [`DirCreated`](crate::DirCreated).
pub const FILES_MKDIR: &str = "/v1/files/mkdir";
/// `GET /v1/files?path=&recursive=&depth=&limit=` lists (`depth` levels, `0` counting as `1`;
/// all of them with `recursive`; one without either); `DELETE /v1/files?path=&recursive=`
/// removes.
pub const FILES: &str = "/v1/files";
/// `GET` reads a file's bytes; `PUT` writes them (parents are created).
pub const FILES_CONTENT: &str = "/v1/files/content";
/// `GET /v1/files/stat?path=`: one [`FileEntry`](crate::FileEntry).
pub const FILES_STAT: &str = "/v1/files/stat";
/// `POST` a [`MoveRequest`](crate::MoveRequest); answers the moved entry's
/// [`FileEntry`](crate::FileEntry).
pub const FILES_MOVE: &str = "/v1/files/move";
/// `GET /v1/files/watch?path=&recursive=`: a stream of [`WatchEvent`](crate::WatchEvent)s, one
/// JSON object a line, `start` first; it lasts until the client goes away.
pub const FILES_WATCH: &str = "/v1/files/watch";
/// `POST` a [`WatchRequest`](crate::WatchRequest) to start a polling watcher (answers its
/// [`WatcherInfo`](crate::WatcherInfo)); `GET` lists them.
pub const WATCHERS: &str = "/v1/watchers";
/// `GET` streams the whole workspace as a tar archive; `PUT` extracts one into it and answers
/// an [`ArchiveSummary`](crate::ArchiveSummary). Used to copy a workspace from one sandbox to
/// another without the control plane ever reading it from the host.
pub const WORKSPACE_ARCHIVE: &str = "/v1/workspace/archive";

/// `POST` a [`ContextRequest`](crate::ContextRequest) (answers its
/// [`ContextInfo`](crate::ContextInfo)); `GET` lists every context.
pub const CONTEXTS: &str = "/v1/contexts";
/// `GET`: the pre-started interpreters waiting for executions, as [`SpareInfo`](crate::SpareInfo)s.
pub const SPARES: &str = "/v1/spares";

/// `id` as one path segment: every byte but `A-Z a-z 0-9 - _ ~` percent-encoded (dots too, so
/// no id reads as `.` or `..`), so an id from a client (a watcher's, say) always makes a valid
/// URI and reaches the executor as it was given, to be found or not.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET` a context's [`ContextInfo`](crate::ContextInfo); `DELETE` ends it (its interpreter is
/// killed, a running execution ends `crashed`) and forgets it.
pub fn context(id: &str) -> String {
    format!("{CONTEXTS}/{}", segment(id))
}

/// `POST` an [`ExecRequest`](crate::ExecRequest) to run it as the context's next cell; answered
/// as `POST /v1/executions` is.
pub fn context_executions(id: &str) -> String {
    format!("{CONTEXTS}/{}/executions", segment(id))
}

/// `POST`: kill the context's interpreter (a running execution ends `crashed`) and start a fresh
/// one in its place, with the same settings; a lost or expired context comes back this way.
pub fn context_restart(id: &str) -> String {
    format!("{CONTEXTS}/{}/restart", segment(id))
}

/// `POST`: interrupt the running execution (`KeyboardInterrupt` in Python, an interrupted
/// script in JavaScript, `SIGINT` to the foreground job in a shell); the context survives.
pub fn context_interrupt(id: &str) -> String {
    format!("{CONTEXTS}/{}/interrupt", segment(id))
}

/// `DELETE` stops a polling watcher.
pub fn watcher(id: &str) -> String {
    format!("{WATCHERS}/{}", segment(id))
}

/// `GET`: the watcher's [`WatcherEvents`](crate::WatcherEvents) since the previous poll.
pub fn watcher_events(id: &str) -> String {
    format!("{WATCHERS}/{}/events", segment(id))
}

/// `GET` an execution's [`ExecutionRecord`](crate::ExecutionRecord); `DELETE` forgets a
/// finished one (the control plane has stored its result).
pub fn execution(id: &str) -> String {
    format!("{EXECUTIONS}/{}", segment(id))
}

/// `POST`: kill a running execution (it ends as `crashed` with a message saying so).
pub fn execution_kill(id: &str) -> String {
    format!("{EXECUTIONS}/{}/kill", segment(id))
}

/// `POST` a [`ProcessRequest`](crate::ProcessRequest): answers `application/x-ndjson`
/// [`ProcessEvent`](crate::ProcessEvent)s, `start` first and `end` last (the process keeps
/// running if the stream is dropped); `GET` lists [`ProcessInfo`](crate::ProcessInfo)s.
pub const PROCESSES: &str = "/v1/processes";

/// `GET`: the process's [`ProcessInfo`](crate::ProcessInfo).
pub fn process(pid: u32) -> String {
    format!("{PROCESSES}/{pid}")
}

/// `GET`: the process's events from now on (`start`, output, `end`); an exited process answers
/// `start` and its `end` at once.
pub fn process_stream(pid: u32) -> String {
    format!("{PROCESSES}/{pid}/stream")
}

/// `POST` raw bytes to the process's standard input.
pub fn process_stdin(pid: u32) -> String {
    format!("{PROCESSES}/{pid}/stdin")
}

/// `POST`: close the process's standard input (it reads end-of-file).
pub fn process_stdin_close(pid: u32) -> String {
    format!("{PROCESSES}/{pid}/stdin/close")
}

/// `POST` a [`SignalRequest`](crate::SignalRequest): signal every process of its tree.
pub fn process_signal(pid: u32) -> String {
    format!("{PROCESSES}/{pid}/signal")
}

/// `POST` a [`PtySize`](crate::PtySize): resize the process's terminal.
pub fn process_pty(pid: u32) -> String {
    format!("{PROCESSES}/{pid}/pty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_clients_are_one_segment_of_a_valid_uri() {
        assert_eq!(watcher_events("w_1-a~"), "/v1/watchers/w_1-a~/events");
        assert_eq!(watcher_events(" "), "/v1/watchers/%20/events");
        assert_eq!(watcher("../x?y#z/é"), "/v1/watchers/%2E%2E%2Fx%3Fy%23z%2F%C3%A9");
        assert_eq!(context_restart("ctx 1"), "/v1/contexts/ctx%201/restart");
        assert_eq!(execution_kill("exec_1"), "/v1/executions/exec_1/kill");
        for id in [" ", "\u{0}\n", "a/b", "%", "..", "é"] {
            let path = watcher_events(id);
            let plain = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_~%/".contains(&b));
            assert!(plain && path.matches('/').count() == 4, "{id:?} is not one plain segment: {path}");
        }
    }
}
