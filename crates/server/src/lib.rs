//! `sandbox-server`: the control plane. It serves the REST API, keeps metadata in a store,
//! and runs sessions in sandboxes through a runtime backend.

pub mod api;
pub mod caller;

pub mod ids;
pub mod metrics;
pub mod service;
pub mod settings;
pub mod state;

use anyhow::Context;
use sandbox_runtime::Runtime;
use sandbox_runtime::docker::{DockerConfig, DockerRuntime};
use sandbox_runtime::kubernetes::KubernetesRuntime;
use service::executions::Recovery;
use settings::{RuntimeKind, Settings};
use state::AppState;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Opens the store, seeds the built-in templates and makes sure an admin key exists. Returns
/// the store and, on the very first start, the new admin key to print once.
pub async fn prepare(settings: &Settings) -> anyhow::Result<(Arc<dyn sandbox_store::Store>, Option<String>)> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating the data directory {}", settings.data_dir.display()))?;
    let store = sandbox_store::open(&settings.database_url()).await.context("opening the database")?;
    service::templates::seed(store.as_ref(), &settings.image_prefix)
        .await
        .map_err(|e| anyhow::anyhow!("seeding templates: {e}"))?;
    let new_key = service::keys::Keys::new(store.clone())
        .bootstrap(settings.api_key.as_deref(), &settings.data_dir)
        .await?;
    Ok((store, new_key))
}

/// The name of the host account or group that has id `id`, if one does (through NSS, so LDAP
/// and systemd's dynamic users count too).
fn host_name_of(id: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: the out-parameters are plain data the calls fill; `buf` outlives the names read.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(id, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) == 0 && !found.is_null() {
            return Some(format!("user {}", std::ffi::CStr::from_ptr(pw.pw_name).to_string_lossy()));
        }
        let mut gr: libc::group = std::mem::zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        if libc::getgrgid_r(id, &mut gr, buf.as_mut_ptr(), buf.len(), &mut found) == 0 && !found.is_null() {
            return Some(format!("group {}", std::ffi::CStr::from_ptr(gr.gr_name).to_string_lossy()));
        }
    }
    None
}

/// Refuses a sandbox uid that is a host identity: its owner would own every sandbox's files and
/// processes on the host (Docker runs containers without a user namespace).
fn check_sandbox_uid(uid: u32) -> anyhow::Result<()> {
    if let Some(name) = host_name_of(uid) {
        anyhow::bail!(
            "executor.uid {uid} is the host's {name}; sandboxes must run under an id no host account or group \
             uses. Choose a free one (SANDBOX_EXECUTOR__UID) — the default is {}",
            sandbox_protocol::DEFAULT_SANDBOX_UID
        );
    }
    Ok(())
}

/// Connects the configured runtime backend.
async fn connect_runtime(settings: &Settings) -> anyhow::Result<Arc<dyn Runtime>> {
    Ok(match settings.runtime {
        RuntimeKind::Docker => {
            check_sandbox_uid(settings.executor.uid)?;
            let ready_timeout = Duration::from_secs(settings.limits.sandbox_start_timeout_sec);
            Arc::new(
                DockerRuntime::connect(DockerConfig { ready_timeout })
                    .await
                    .context("connecting to Docker")?,
            )
        }
        RuntimeKind::Kubernetes => Arc::new(
            KubernetesRuntime::connect(settings.kubernetes.clone())
                .await
                .context("connecting to Kubernetes")?,
        ),
    })
}

/// Runs the server until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (store, new_key) = prepare(&settings).await?;
    if let Some(key) = new_key {
        println!(
            "Created an admin API key (also stored in {}):\n\n    {key}\n",
            settings.data_dir.join(service::keys::ADMIN_KEY_FILE).display()
        );
    }
    let runtime = connect_runtime(&settings).await?;
    let workspaces =
        service::workspaces::connect(&settings.storage).await.context("connecting to workspace storage")?;
    let listen = settings.listen;
    let grace = Duration::from_secs(settings.lifecycle.shutdown_grace_sec);
    let state = AppState::new(settings, store, runtime, workspaces);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    // Collect what a previous process left unfinished, then take part in leadership.
    match state.executions.recover(Recovery::Startup).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(executions = n, "finished executions left by the previous run"),
        Err(e) => tracing::warn!(error = %e, "collecting unfinished executions failed"),
    }
    match state.sessions.resume_egress().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "serving the egress proxies of running sessions"),
        Err(e) => tracing::warn!(error = %e, "resuming the egress proxies of running sessions failed"),
    }
    match state.templates.resume_pulls().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(templates = n, "pulling template images a previous run left unfinished"),
        Err(e) => tracing::warn!(error = %e, "resuming template image pulls failed"),
    }
    if state.lifecycle.campaign().await {
        state.lifecycle.pass().await;
    }
    let loops = tokio::spawn(state.lifecycle.clone().run());
    let data_plane = match state.settings.e2b.data_plane_listen.filter(|_| state.settings.e2b.enabled) {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (e2b.data_plane_listen)"))?;
            tracing::info!(%addr, "E2B data plane listening");
            Some(tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
                listener,
                api::data_plane_router(state.clone()),
            ))))
        }
        None => None,
    };
    tracing::info!(%listen, instance = %state.lifecycle.instance_id, "sandbox-server listening");
    api::serve(listener, state.clone(), shutdown, grace).await?;
    if let Some(task) = data_plane {
        task.abort();
    }
    loops.abort();
    state.lifecycle.resign().await;
    state.executions.drain(grace).await;
    tracing::info!("sandbox-server stopped");
    Ok(())
}

/// Runs the egress proxy alone, for sandboxes that reach it over the network (Kubernetes: its
/// own Deployment and Service): serves every sandbox presenting a credential made with the key
/// in `key_file` on `listen`, each connection as the session holding its sandbox in the store,
/// under the `[egress]` settings, audited to the store, until `shutdown` resolves.
pub async fn serve_egress_proxy(
    settings: Settings,
    listen: std::net::SocketAddr,
    key_file: &std::path::Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = sandbox_egress::EgressKey::from_file(key_file)?;
    let store = sandbox_store::open(&settings.database_url()).await.context("opening the database")?;
    let egress = service::egress::Egress::new(&settings.egress, store.clone(), Arc::default())?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, "egress proxy listening");
    tokio::select! {
        error = egress.serve_shared(listener, key, store) => Err(anyhow::Error::from(error).context("the egress proxy's listener failed")),
        () = shutdown => {
            tracing::info!("egress proxy stopped");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_of_a_host_account_is_refused() {
        let err = check_sandbox_uid(0).unwrap_err().to_string();
        assert!(err.contains("user root"), "{err}");
        assert!(check_sandbox_uid(sandbox_protocol::DEFAULT_SANDBOX_UID).is_ok(), "the default is free here");
    }
}
