//! The executor's HTTP routes, named once for both ends.

/// `GET`: [`Health`](crate::Health).
pub const HEALTH: &str = "/v1/health";
/// `POST` an [`ExecRequest`](crate::ExecRequest); `GET` lists [`ExecutionSummary`](crate::ExecutionSummary).
pub const EXECUTIONS: &str = "/v1/executions";
/// `POST /v1/files/mkdir?path=`: create a directory and its parents.
pub const FILES_MKDIR: &str = "/v1/files/mkdir";
/// `GET /v1/files?path=&recursive=&limit=` lists; `DELETE /v1/files?path=&recursive=` removes.
pub const FILES: &str = "/v1/files";
/// `GET` reads a file's bytes; `PUT` writes them (parents are created).
pub const FILES_CONTENT: &str = "/v1/files/content";
/// `GET /v1/files/stat?path=`: one [`FileEntry`](crate::FileEntry).
pub const FILES_STAT: &str = "/v1/files/stat";
/// `GET` streams the whole workspace as a tar archive; `PUT` extracts one into it and answers
/// an [`ArchiveSummary`](crate::ArchiveSummary). Used to copy a workspace from one sandbox to
/// another without the control plane ever reading it from the host.
pub const WORKSPACE_ARCHIVE: &str = "/v1/workspace/archive";

/// `GET` an execution's [`ExecutionRecord`](crate::ExecutionRecord); `DELETE` forgets a
/// finished one (the control plane has stored its result).
pub fn execution(id: &str) -> String {
    format!("{EXECUTIONS}/{id}")
}

/// `POST`: kill a running execution (it ends as `crashed` with a message saying so).
pub fn execution_kill(id: &str) -> String {
    format!("{EXECUTIONS}/{id}/kill")
}
