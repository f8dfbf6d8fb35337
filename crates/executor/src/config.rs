//! The executor's settings: command-line flags, each also readable from an environment variable.

use clap::Args;
use sandbox_core::Language;
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
/// Default for `--max-display-bytes`.
pub const DEFAULT_MAX_DISPLAY_BYTES: usize = 4 << 20;
/// Default for `--max-running-processes`.
pub const DEFAULT_MAX_RUNNING_PROCESSES: usize = 32;
/// Default for `--max-contexts`.
pub const DEFAULT_MAX_CONTEXTS: usize = 8;
/// Default for `--context-idle-timeout-secs`.
pub const DEFAULT_CONTEXT_IDLE_TIMEOUT_SECS: u64 = 1800;
/// Default for `--interrupt-grace-ms`.
pub const DEFAULT_INTERRUPT_GRACE_MS: u64 = 2000;
/// Default for `--spare-idle-secs`.
pub const DEFAULT_SPARE_IDLE_SECS: u64 = 120;

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

    /// The directory where the control plane puts the egress proxy's socket
    /// (`proxy.sock`) while the session may reach the network; an execution started while it
    /// is there gets the egress relay and the proxy variables.
    #[arg(long, env = "SANDBOX_EXECUTOR_EGRESS_DIR", default_value = sandbox_protocol::contract::EGRESS_DIR)]
    pub egress_dir: PathBuf,

    /// The egress proxy's TCP address, when the sandbox reaches it over the network
    /// (Kubernetes): the executor then binds `proxy.sock` in `--egress-dir` itself (which must
    /// be a directory of its own) and relays each connection to this address, presenting the
    /// credential of `--egress-credential-file`.
    #[arg(long, env = env::EGRESS_PROXY, requires = "egress_credential_file")]
    pub egress_proxy: Option<std::net::SocketAddr>,

    /// File holding this sandbox's egress credential (read once at start).
    #[arg(long, env = env::EGRESS_CREDENTIAL_FILE, requires = "egress_proxy")]
    pub egress_credential_file: Option<PathBuf>,

    /// The bubblewrap binary.
    #[arg(long, env = "SANDBOX_EXECUTOR_BWRAP", default_value = "bwrap")]
    pub bwrap: PathBuf,

    /// A directory of the executor's own (emptied at start) holding one directory per sandbox:
    /// its runner and, once a request comes, the code and its inputs, bound read-only at
    /// `/sandbox` inside it.
    #[arg(long, env = "SANDBOX_EXECUTOR_SCRATCH_DIR", default_value = "/tmp/sandbox-executor")]
    pub scratch_dir: PathBuf,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub limits: Limits,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub interpreters: Interpreters,

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

    /// Processes (`POST /v1/processes`, each in a sandbox of its own) allowed to run at once;
    /// more are refused with `too_many_processes`.
    #[arg(long, env = env::MAX_RUNNING_PROCESSES, default_value_t = DEFAULT_MAX_RUNNING_PROCESSES)]
    pub max_running_processes: usize,

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

    /// Bytes of display outputs (`results`) kept per execution, as their JSON lines; the rest
    /// are dropped and `results_truncated` set.
    #[arg(long, env = "SANDBOX_EXECUTOR_MAX_DISPLAY_BYTES", default_value_t = DEFAULT_MAX_DISPLAY_BYTES)]
    pub max_display_bytes: usize,
}

/// Long-lived interpreters: code contexts, and interpreters started before their execution.
#[derive(Debug, Clone, Args)]
pub struct Interpreters {
    /// Live contexts allowed at once; more are refused with `too_many_contexts`. Each costs its
    /// interpreter's memory and processes (about 4 for Python, 15 for Node.js) against the
    /// container's limits.
    #[arg(long, env = env::MAX_CONTEXTS, default_value_t = DEFAULT_MAX_CONTEXTS)]
    pub max_contexts: usize,

    /// Seconds a context may stay idle before its interpreter is reclaimed (it becomes
    /// `expired`; a restart brings it back, empty).
    #[arg(long, env = env::CONTEXT_IDLE_TIMEOUT_SECS, default_value_t = DEFAULT_CONTEXT_IDLE_TIMEOUT_SECS)]
    pub context_idle_timeout_secs: u64,

    /// Milliseconds a context's cell has, once interrupted at its timeout, to stop; after that
    /// the interpreter is killed and the context is `lost`.
    #[arg(long, env = "SANDBOX_EXECUTOR_INTERRUPT_GRACE_MS", default_value_t = DEFAULT_INTERRUPT_GRACE_MS)]
    pub interrupt_grace_ms: u64,

    /// Seconds a pre-started interpreter (a spare) of a language is kept after that language
    /// was last used; 0 starts every interpreter when its execution comes.
    #[arg(long, env = "SANDBOX_EXECUTOR_SPARE_IDLE_SECS", default_value_t = DEFAULT_SPARE_IDLE_SECS)]
    pub spare_idle_secs: u64,

    /// Languages (comma-separated) to pre-start an interpreter for at once, kept until the
    /// language is first used: for a pooled sandbox, whose first execution then skips
    /// interpreter start-up. Empty by default: an idle sandbox runs nothing but the executor.
    #[arg(long, env = env::PRESTART, value_delimiter = ',')]
    pub prestart: Vec<Language>,
}

impl Default for Interpreters {
    fn default() -> Self {
        Interpreters {
            max_contexts: DEFAULT_MAX_CONTEXTS,
            context_idle_timeout_secs: DEFAULT_CONTEXT_IDLE_TIMEOUT_SECS,
            interrupt_grace_ms: DEFAULT_INTERRUPT_GRACE_MS,
            spare_idle_secs: DEFAULT_SPARE_IDLE_SECS,
            prestart: Vec::new(),
        }
    }
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
            max_running_processes: DEFAULT_MAX_RUNNING_PROCESSES,
            max_timeout_secs: DEFAULT_MAX_TIMEOUT_SECS,
            max_upload_mb: DEFAULT_MAX_UPLOAD_MB,
            memory_limit_mb: None,
            max_display_bytes: DEFAULT_MAX_DISPLAY_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: ExecutorConfig,
    }

    /// The defaults the flags document are the ones code that builds its settings gets.
    #[test]
    fn flag_defaults_match_the_default_settings() {
        let cli = Cli::try_parse_from(["sandbox-executor"]).unwrap();
        let (limits, interpreters) = (cli.cfg.limits, cli.cfg.interpreters);
        let d = Limits::default();
        assert_eq!(
            (limits.max_output_bytes, limits.max_result_bytes, limits.max_display_bytes, limits.tmp_size_mb),
            (d.max_output_bytes, d.max_result_bytes, d.max_display_bytes, d.tmp_size_mb)
        );
        assert_eq!(
            (limits.max_processes, limits.max_open_files, limits.max_file_size_mb, limits.max_concurrent),
            (d.max_processes, d.max_open_files, d.max_file_size_mb, d.max_concurrent)
        );
        assert_eq!(
            (
                limits.max_timeout_secs,
                limits.max_upload_mb,
                limits.memory_limit_mb,
                limits.max_running_processes
            ),
            (3600, 1024, None, d.max_running_processes)
        );
        let i = Interpreters::default();
        assert_eq!(
            (
                interpreters.max_contexts,
                interpreters.context_idle_timeout_secs,
                interpreters.interrupt_grace_ms
            ),
            (i.max_contexts, i.context_idle_timeout_secs, i.interrupt_grace_ms)
        );
        assert_eq!((interpreters.spare_idle_secs, interpreters.prestart), (i.spare_idle_secs, i.prestart));
        let cli = Cli::try_parse_from(["sandbox-executor", "--prestart", "python,shell"]).unwrap();
        assert_eq!(cli.cfg.interpreters.prestart, [Language::Python, Language::Shell]);
    }
}
