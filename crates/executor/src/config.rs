//! The executor's settings: command-line flags, each also readable from an environment variable.

use clap::Args;
pub use sandbox_daemon::LogFormat;
use sandbox_protocol::contract::env;
use std::path::PathBuf;

/// Default for `--max-output-bytes`.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Default for `--max-result-bytes`.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1 << 20;
/// Default for `--tmp-size-mb`.
pub const DEFAULT_TMP_SIZE_MB: u64 = 128;
/// Default for `--max-processes`.
pub const DEFAULT_MAX_PROCESSES: u64 = 64;
/// Default for `--max-open-files`.
pub const DEFAULT_MAX_OPEN_FILES: u64 = 1024;
/// Default for `--max-file-size-mb`.
pub const DEFAULT_MAX_FILE_SIZE_MB: u64 = 1024;
/// Default for `--max-concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 16;
/// Default for `--max-timeout-secs`.
pub const DEFAULT_MAX_TIMEOUT_SECS: u64 = 3600;
/// Default for `--max-upload-mb`.
pub const DEFAULT_MAX_UPLOAD_MB: u64 = 1024;

/// Everything `sandbox-executor serve` can be told.
#[derive(Debug, Clone, Args)]
pub struct ExecutorConfig {
    /// Unix socket to listen on (created; its directory must exist and be writable).
    #[arg(long, env = env::SOCKET, default_value = "/run/sandbox/executor.sock")]
    pub socket: PathBuf,

    /// Uids whose processes may connect to the Unix socket (the control plane's; root by
    /// default). A connection from any other process is closed unanswered, whatever the socket's
    /// file permissions allow.
    #[arg(
        long = "control-uid",
        env = env::CONTROL_UIDS,
        value_delimiter = ',',
        default_value = "0"
    )]
    pub control_uids: Vec<u32>,

    /// Also listen on TCP at this address (Kubernetes); requires a token.
    #[arg(long, env = env::TCP)]
    pub tcp: Option<std::net::SocketAddr>,

    /// File holding the bearer token the TCP listener requires (read once at start).
    #[arg(long, env = env::TOKEN_FILE)]
    pub token_file: Option<PathBuf>,

    /// The workspace directory user code sees as `/workspace`.
    #[arg(long, env = env::WORKSPACE, default_value = "/workspace")]
    pub workspace: PathBuf,

    /// A directory of installed Python packages, mounted read-only and put on `PYTHONPATH`.
    #[arg(long, env = env::DEPS_DIR)]
    pub deps_dir: Option<PathBuf>,

    /// The bubblewrap binary.
    #[arg(long, env = "SANDBOX_EXECUTOR_BWRAP", default_value = "bwrap")]
    pub bwrap: PathBuf,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub limits: Limits,

    /// Finished results kept while nobody has collected them; the oldest go first past this.
    #[arg(long, env = "SANDBOX_EXECUTOR_RESULT_RETENTION", default_value_t = 256)]
    pub result_retention: usize,

    /// Log as JSON lines (`json`) or for people (`text`).
    #[arg(long, env = "SANDBOX_EXECUTOR_LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}

/// Per-execution limits.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Bytes of stdout and of stderr kept per execution; the rest is counted and dropped.
    #[arg(long, env = env::MAX_OUTPUT_BYTES, default_value_t = DEFAULT_MAX_OUTPUT_BYTES)]
    pub max_output_bytes: usize,

    /// Largest handler return value, in bytes of JSON.
    #[arg(long, env = "SANDBOX_EXECUTOR_MAX_RESULT_BYTES", default_value_t = DEFAULT_MAX_RESULT_BYTES)]
    pub max_result_bytes: usize,

    /// Size of each execution's private `/tmp` (and `/dev/shm`), in MiB.
    #[arg(long, env = env::TMP_SIZE_MB, default_value_t = DEFAULT_TMP_SIZE_MB)]
    pub tmp_size_mb: u64,

    /// `RLIMIT_NPROC`: processes and threads per execution.
    #[arg(long, env = env::MAX_PROCESSES, default_value_t = DEFAULT_MAX_PROCESSES)]
    pub max_processes: u64,

    /// `RLIMIT_NOFILE`: open files per process.
    #[arg(long, env = "SANDBOX_EXECUTOR_MAX_OPEN_FILES", default_value_t = DEFAULT_MAX_OPEN_FILES)]
    pub max_open_files: u64,

    /// `RLIMIT_FSIZE`: largest file a process may write, in MiB.
    #[arg(long, env = "SANDBOX_EXECUTOR_MAX_FILE_SIZE_MB", default_value_t = DEFAULT_MAX_FILE_SIZE_MB)]
    pub max_file_size_mb: u64,

    /// Executions allowed to run at once; more are refused with `busy`.
    #[arg(long, env = env::MAX_CONCURRENT, default_value_t = DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent: usize,

    /// Longest timeout accepted, in seconds.
    #[arg(long, env = env::MAX_TIMEOUT_SECS, default_value_t = DEFAULT_MAX_TIMEOUT_SECS)]
    pub max_timeout_secs: u64,

    /// Largest upload through the files API, in MiB.
    #[arg(long, env = "SANDBOX_EXECUTOR_MAX_UPLOAD_MB", default_value_t = DEFAULT_MAX_UPLOAD_MB)]
    pub max_upload_mb: u64,

    /// Memory limit reported to handlers as `context.memory_limit_in_mb`; read from the
    /// container's cgroup when not given.
    #[arg(long, env = env::MEMORY_LIMIT_MB)]
    pub memory_limit_mb: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            tmp_size_mb: DEFAULT_TMP_SIZE_MB,
            max_processes: DEFAULT_MAX_PROCESSES,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_file_size_mb: DEFAULT_MAX_FILE_SIZE_MB,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_timeout_secs: DEFAULT_MAX_TIMEOUT_SECS,
            max_upload_mb: DEFAULT_MAX_UPLOAD_MB,
            memory_limit_mb: None,
        }
    }
}
