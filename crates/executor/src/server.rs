//! Start-up (refusing to run without a working sandbox) and the listeners.

use crate::api;
use crate::config::ExecutorConfig;
use crate::engine::{BuildError, Engine, EngineConfig, Start};
use crate::lang;
use crate::registry::Begin;
use crate::sandbox::bwrap::{discover_proc_masks, discover_system_mounts};
use crate::sandbox::cgroup::MemoryCgroup;
use sandbox_core::{ExecutionStatus, Language};
use sandbox_protocol::ExecRequest;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the executor would not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// bwrap is missing or does not run.
    #[error("bubblewrap ({path}) cannot be run: {source}; install the `bubblewrap` package")]
    BwrapMissing {
        /// The configured binary.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The workspace directory is unusable.
    #[error("workspace {path} cannot be opened: {source}")]
    Workspace {
        /// The configured directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The scratch directory is unusable.
    #[error("scratch directory {path} cannot be prepared: {source}")]
    Scratch {
        /// The configured directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The egress socket cannot be served (Kubernetes).
    #[error("egress: {0}")]
    Egress(String),
    /// No interpreter exists.
    #[error("none of python3, node or bash is installed")]
    NoLanguages,
    /// A trial execution failed: the container does not allow bwrap's namespaces and mounts.
    #[error(
        "the sandbox does not work here: {0}. The container needs the project's seccomp profile \
         and unmasked /proc (see docs/security.md); the executor never runs code without it"
    )]
    SandboxBroken(String),
    /// TCP was requested without a usable token.
    #[error("the TCP listener needs a token: {0}")]
    Token(String),
    /// Something else.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Checks the environment, builds the engine, and proves the sandbox works by running a
/// trivial program in it.
pub async fn start(cfg: &ExecutorConfig) -> Result<Arc<Engine>, StartError> {
    std::process::Command::new(&cfg.bwrap)
        .arg("--version")
        .output()
        .and_then(
            |o| if o.status.success() { Ok(()) } else { Err(std::io::Error::other("--version failed")) },
        )
        .map_err(|source| StartError::BwrapMissing { path: cfg.bwrap.clone(), source })?;
    let languages = lang::available(Path::new("/"));
    let probe_language =
        *languages.iter().min_by_key(|l| probe_preference(**l)).ok_or(StartError::NoLanguages)?;
    let engine_cfg = EngineConfig {
        bwrap: cfg.bwrap.clone(),
        workspace: cfg.workspace.clone(),
        deps: cfg.deps_dir.clone(),
        limits: cfg.limits.clone(),
        system: discover_system_mounts(Path::new("/"))?,
        proc_masks: discover_proc_masks(Path::new("/proc"))?,
        supervisor: std::env::current_exe()?,
        scratch: cfg.scratch_dir.clone(),
        interpreters: cfg.interpreters.clone(),
        languages,
        cgroup: MemoryCgroup::detect(Path::new("/sys/fs/cgroup")),
        egress_dir: cfg.egress_dir.clone(),
    };
    let engine = Engine::new(engine_cfg, cfg.result_retention).map_err(|e| match e {
        BuildError::Workspace(source) => StartError::Workspace { path: cfg.workspace.clone(), source },
        BuildError::Scratch(source) => StartError::Scratch { path: cfg.scratch_dir.clone(), source },
    })?;
    let engine = Arc::new(engine);
    // A signal handler for SIGCHLD; failing to install one is an I/O error like any other.
    engine.reaper().clone().run()?;
    probe(&engine, probe_language).await?;
    // Before the spares start, so that they have the relay (a spare started without the socket
    // is not used once it is there).
    start_egress_bridge(cfg)?;
    engine.prestart();
    let tidy = engine.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tidy.tidy_interval());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            tidy.tidy();
        }
    });
    Ok(engine)
}

/// With `--egress-proxy` (Kubernetes): serves the egress socket in `--egress-dir`, relaying to
/// the proxy with the sandbox's credential, until the process exits.
fn start_egress_bridge(cfg: &ExecutorConfig) -> Result<(), StartError> {
    let (Some(proxy), Some(file)) = (cfg.egress_proxy, &cfg.egress_credential_file) else { return Ok(()) };
    let credential = crate::egress::read_credential(file)
        .map_err(|e| StartError::Egress(format!("{}: {e}", file.display())))?;
    let listener = crate::egress::bind_bridge(&cfg.egress_dir)
        .map_err(|e| StartError::Egress(format!("{}: {e}", cfg.egress_dir.display())))?;
    tracing::info!(%proxy, "relaying the egress socket to the proxy");
    tokio::spawn(async move {
        let error = crate::egress::serve_bridge(listener, proxy, credential).await;
        tracing::error!(%error, "the egress bridge stopped");
    });
    Ok(())
}

fn probe_preference(l: Language) -> u8 {
    match l {
        Language::Shell => 0,
        Language::Python => 1,
        Language::Javascript => 2,
    }
}

async fn probe(engine: &Arc<Engine>, language: Language) -> Result<(), StartError> {
    let id = "startup-probe";
    let code = match language {
        Language::Shell => "true",
        Language::Python => "pass",
        Language::Javascript => "",
    };
    let req = ExecRequest {
        execution_id: id.into(),
        language,
        code: code.into(),
        event: None,
        timeout_ms: 30_000,
        env: Default::default(),
        function_name: None,
        mode: Default::default(),
    };
    let Ok(Begin::New(ticket, ())) = engine.registry.begin(id) else {
        return Err(StartError::SandboxBroken("the probe could not be registered".into()));
    };
    // A sandbox of its own: the probe uses no language, so it leaves no spare behind.
    let r = engine.run(ticket, req, None, Start::Fresh).await;
    let _ = engine.registry.forget(id);
    if r.status != ExecutionStatus::Completed {
        let detail = [r.error_message.as_deref().unwrap_or(""), r.stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(StartError::SandboxBroken(detail));
    }
    tracing::info!(language = %language, duration_ms = r.metrics.duration_ms, "sandbox probe passed");
    Ok(())
}

/// Serves the API on the Unix socket (and on TCP if configured) until `shutdown` completes;
/// running executions are then killed so each still gets its result.
pub async fn serve(
    cfg: &ExecutorConfig,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let _ = std::fs::remove_file(&cfg.socket);
    let unix = tokio::net::UnixListener::bind(&cfg.socket)?;
    std::fs::set_permissions(&cfg.socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    tracing::info!(socket = %cfg.socket.display(), "listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = tokio::task::JoinSet::new();
    let unix_app = api::router(engine.clone());
    servers.spawn({
        let stop = stopped(stop_rx.clone());
        let unix = ControlPlaneOnly { inner: unix, allowed: cfg.control_uids.clone() };
        async move { axum::serve(unix, unix_app).with_graceful_shutdown(stop).await }
    });
    if let Some(addr) = cfg.tcp {
        let token = read_token(cfg)?;
        let tcp = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(%addr, "listening on TCP (bearer token required)");
        let tcp_app = api::router_with_token(engine.clone(), token);
        let stop = stopped(stop_rx.clone());
        servers.spawn(async move { axum::serve(tcp, tcp_app).with_graceful_shutdown(stop).await });
    }
    shutdown.await;
    tracing::info!(running = engine.registry.running(), "shutting down");
    engine.shutdown();
    let _ = stop_tx.send(true);
    while let Some(r) = servers.join_next().await {
        r.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// The Unix listener, admitting only processes of the control plane's uids (`SO_PEERCRED`).
struct ControlPlaneOnly {
    inner: tokio::net::UnixListener,
    allowed: Vec<u32>,
}

impl axum::serve::Listener for ControlPlaneOnly {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match io.peer_cred() {
                Ok(peer) if self.allowed.contains(&peer.uid()) => return (io, addr),
                Ok(peer) => tracing::warn!(
                    uid = peer.uid(),
                    pid = peer.pid(),
                    "closed a connection from a process that is not the control plane"
                ),
                Err(e) => tracing::warn!(error = %e, "closed a connection whose peer cannot be told"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn read_token(cfg: &ExecutorConfig) -> Result<String, StartError> {
    let path = cfg.token_file.as_ref().ok_or_else(|| StartError::Token("set --token-file".into()))?;
    let token =
        std::fs::read_to_string(path).map_err(|e| StartError::Token(format!("{}: {e}", path.display())))?;
    let token = token.trim().to_owned();
    if token.len() < 16 {
        return Err(StartError::Token("the token must be at least 16 characters".into()));
    }
    Ok(token)
}
