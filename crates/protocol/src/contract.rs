//! The contract between the control plane and a sandbox container: the uid it runs as, the
//! paths inside it, the environment variables that configure its executor, and the rules for
//! the ids and environment variables that cross into it. The executor, both runtime backends
//! and the server all take these from here.

/// The host uid (and gid) sandbox containers and package installers run as unless the operator
/// chooses another: one no host account uses (below systemd's dynamic range, above the
/// human-user range), so a sandbox's processes and files are nobody's on the host.
pub const DEFAULT_SANDBOX_UID: u32 = 61_000;

/// The executor binary inside every template image.
pub const EXECUTOR_PATH: &str = "/usr/local/bin/sandbox-executor";
/// Where the executor's Unix socket lives inside a sandbox container.
pub const CONTAINER_SOCKET_DIR: &str = "/run/sandbox";
/// The socket's file name inside [`CONTAINER_SOCKET_DIR`].
pub const SOCKET_FILE_NAME: &str = "executor.sock";
/// Where the workspace is mounted inside a sandbox container (and inside bwrap).
pub const WORKSPACE_DIR: &str = "/workspace";
/// Where a session's installed packages are mounted in its container, read-only.
pub const DEPS_DIR: &str = "/opt/sandbox/deps";
/// The name, inside [`DEPS_DIR`], of the link to the current set of installed packages; an
/// install writes a new set beside the old one and then moves this link, so an execution never
/// sees half an install.
pub const DEPS_CURRENT: &str = "site";
/// What Python finds installed packages through: `PYTHONPATH` of every execution.
pub const DEPS_PYTHONPATH: &str = "/opt/sandbox/deps/site";
/// Where a sandbox container sees its egress directory: a host directory only the control plane
/// writes, mounted read-only. It holds [`EGRESS_SOCKET_NAME`] while the session the sandbox
/// serves may reach the network through the egress proxy, and nothing otherwise.
pub const EGRESS_DIR: &str = "/run/sandbox-egress";
/// The egress proxy's Unix socket inside [`EGRESS_DIR`]; a connection to it is the session's.
pub const EGRESS_SOCKET_NAME: &str = "proxy.sock";
/// The loopback port the egress relay listens on inside each execution's network namespace;
/// `HTTP_PROXY` and `HTTPS_PROXY` point at `http://127.0.0.1:<port>`.
pub const EGRESS_RELAY_PORT: u16 = 3128;
/// The scheme of the `Proxy-Authorization` header that carries a sandbox's egress credential to
/// a proxy shared by many sandboxes (Kubernetes): `Proxy-Authorization: Bearer <credential>`.
pub const EGRESS_CREDENTIAL_SCHEME: &str = "Bearer";
/// The request header the egress relay adds to the first request of each connection, naming
/// the execution it came from; the proxy records it (as untrusted metadata) and strips it.
pub const EGRESS_EXECUTION_HEADER: &str = "X-Sandbox-Execution";

/// The executor's settings as environment variables (each also a flag of
/// `sandbox-executor serve`).
pub mod env {
    /// The Unix socket to listen on.
    pub const SOCKET: &str = "SANDBOX_EXECUTOR_SOCKET";
    /// The uids allowed to connect to the socket (comma-separated).
    pub const CONTROL_UIDS: &str = "SANDBOX_EXECUTOR_CONTROL_UIDS";
    /// A TCP address to listen on as well (Kubernetes).
    pub const TCP: &str = "SANDBOX_EXECUTOR_TCP";
    /// The file holding the TCP listener's bearer token.
    pub const TOKEN_FILE: &str = "SANDBOX_EXECUTOR_TOKEN_FILE";
    /// The workspace directory.
    pub const WORKSPACE: &str = "SANDBOX_EXECUTOR_WORKSPACE";
    /// The installed packages' directory.
    pub const DEPS_DIR: &str = "SANDBOX_EXECUTOR_DEPS_DIR";
    /// Bytes of stdout and of stderr kept per execution.
    pub const MAX_OUTPUT_BYTES: &str = "SANDBOX_EXECUTOR_MAX_OUTPUT_BYTES";
    /// Size of each execution's `/tmp`, MiB.
    pub const TMP_SIZE_MB: &str = "SANDBOX_EXECUTOR_TMP_SIZE_MB";
    /// Processes per execution.
    pub const MAX_PROCESSES: &str = "SANDBOX_EXECUTOR_MAX_PROCESSES";
    /// Executions at once.
    pub const MAX_CONCURRENT: &str = "SANDBOX_EXECUTOR_MAX_CONCURRENT";
    /// Longest execution timeout, seconds.
    pub const MAX_TIMEOUT_SECS: &str = "SANDBOX_EXECUTOR_MAX_TIMEOUT_SECS";
    /// The memory limit handlers are told about, MiB.
    pub const MEMORY_LIMIT_MB: &str = "SANDBOX_EXECUTOR_MEMORY_LIMIT_MB";
    /// Processes (started on their own) running at once.
    pub const MAX_RUNNING_PROCESSES: &str = "SANDBOX_EXECUTOR_MAX_RUNNING_PROCESSES";
    /// Live code contexts at once.
    pub const MAX_CONTEXTS: &str = "SANDBOX_EXECUTOR_MAX_CONTEXTS";
    /// Seconds a code context may stay idle before its interpreter is reclaimed.
    pub const CONTEXT_IDLE_TIMEOUT_SECS: &str = "SANDBOX_EXECUTOR_CONTEXT_IDLE_TIMEOUT_SECS";
    /// The egress proxy's TCP address, for a sandbox that reaches it over the network
    /// (Kubernetes): the executor then serves the egress socket itself.
    pub const EGRESS_PROXY: &str = "SANDBOX_EXECUTOR_EGRESS_PROXY";
    /// The file holding the sandbox's egress credential, presented to [`EGRESS_PROXY`].
    pub const EGRESS_CREDENTIAL_FILE: &str = "SANDBOX_EXECUTOR_EGRESS_CREDENTIAL_FILE";
    /// Languages to pre-start an interpreter for at once (comma-separated).
    pub const PRESTART: &str = "SANDBOX_EXECUTOR_PRESTART";
}

/// The longest id (session, execution, template) and the characters it may hold.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is acceptable as an id that names a session, an execution or a template, and
/// so ends up in container names, object keys and paths: 1-64 characters of `[A-Za-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The longest environment variable name.
pub const MAX_ENV_NAME_LEN: usize = 128;
/// The longest environment variable value, bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;

/// Why an environment variable cannot reach a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// The name is not `[A-Za-z_][A-Za-z0-9_]*` of at most [`MAX_ENV_NAME_LEN`] characters.
    Name(String),
    /// The value holds a NUL byte or is longer than [`MAX_ENV_VALUE_BYTES`].
    Value(String),
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::Name(k) => write!(f, "{k:?} is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            EnvError::Value(k) => {
                write!(
                    f,
                    "the value of {k} must be at most {} KiB without NUL bytes",
                    MAX_ENV_VALUE_BYTES >> 10
                )
            }
        }
    }
}

impl std::error::Error for EnvError {}

/// Checks one environment variable bound for user code.
pub fn check_env(name: &str, value: &str) -> Result<(), EnvError> {
    let valid_name = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= MAX_ENV_NAME_LEN;
    if !valid_name {
        return Err(EnvError::Name(name.to_owned()));
    }
    if value.contains('\0') || value.len() > MAX_ENV_VALUE_BYTES {
        return Err(EnvError::Value(name.to_owned()));
    }
    Ok(())
}

/// Compares two secrets without an early exit, so timing tells nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("exec_01H-abc") && valid_id(&"x".repeat(64)));
        for bad in ["", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn environment_variables() {
        assert!(check_env("PATH", "/bin").is_ok() && check_env("_x1", "").is_ok());
        for bad in ["", "1A", "A-B", "A B", "É", &"A".repeat(129)] {
            assert_eq!(check_env(bad, "v"), Err(EnvError::Name(bad.to_owned())), "{bad}");
        }
        assert_eq!(check_env("A", "a\0b"), Err(EnvError::Value("A".into())));
        assert_eq!(check_env("A", &"v".repeat(MAX_ENV_VALUE_BYTES + 1)), Err(EnvError::Value("A".into())));
        assert!(check_env("A", &"v".repeat(MAX_ENV_VALUE_BYTES)).is_ok());
    }

    #[test]
    fn secrets_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }
}
