//! The Kubernetes backend (kube-rs): one hardened pod per sandbox; the control plane reaches the
//! executor over TCP at the pod's IP with a per-sandbox bearer token kept in a Secret.
//!
//! A sandbox's id is its pod's name (derived from the sandbox name by [`objects::pod_name`]); the
//! token Secret (`<pod>-token`) and workspace claim (`<pod>-workspace`) are named after it, so
//! [`Runtime::remove`] needs nothing but the id. Creating a sandbox makes the Secret, the claim
//! (in `pvc` mode) and the pod, then *watches* the pod (re-watching when the stream ends or
//! fails) until it is Ready — its readiness probe is the executor's TCP port, which the executor
//! opens only after proving its sandbox works — and finally checks the executor's health with
//! the token. Failures that will not heal (unschedulable, image pull errors, refused
//! configuration, the pod failing) end the wait at once with Kubernetes' reason and message;
//! whatever was created is deleted again, also when the caller gives up and drops the future.

pub mod config;
pub mod objects;
mod pod_state;

pub use config::KubernetesConfig;
pub use objects::{ControlPlaneSelector, Names, network_policy};

use crate::spec::{SandboxInfo, SandboxSpec};
use crate::{ExecutorClient, Runtime, RuntimeError, Sandbox, labels};
use async_trait::async_trait;
use config::ClientSource;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, Config};
use pod_state::Progress;
use sandbox_executor_client::ClientError;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Seconds a removed pod gets to stop (the shortest graceful deletion; `0` would force-delete).
const REMOVE_GRACE_SECS: u32 = 1;
/// Where [`Runtime::executor`] points before it knows a sandbox: connecting fails at once.
const UNRESOLVED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Executor clients by pod name.
type ExecutorCache = Arc<Mutex<HashMap<String, ExecutorClient>>>;

/// The Kubernetes backend.
pub struct KubernetesRuntime {
    apis: Apis,
    cfg: Arc<KubernetesConfig>,
    executors: ExecutorCache,
}

/// The APIs of the sandbox namespace.
#[derive(Clone)]
struct Apis {
    client: Client,
    pods: Api<Pod>,
    secrets: Api<Secret>,
    pvcs: Api<PersistentVolumeClaim>,
}

impl Apis {
    fn new(client: Client, namespace: &str) -> Self {
        Apis {
            pods: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client.clone(), namespace),
            pvcs: Api::namespaced(client.clone(), namespace),
            client,
        }
    }

    /// Deletes the pod, then its Secret and claim; objects already gone are fine.
    async fn delete_all(&self, names: &Names) -> Result<(), RuntimeError> {
        let dp = DeleteParams::default().grace_period(REMOVE_GRACE_SECS);
        ignore_missing(self.pods.delete(&names.pod, &dp).await.map(drop), "delete pod")?;
        ignore_missing(self.secrets.delete(&names.secret, &dp).await.map(drop), "delete secret")?;
        ignore_missing(self.pvcs.delete(&names.pvc, &dp).await.map(drop), "delete claim")
    }

    /// Reads the executor address and token of a running sandbox.
    async fn resolve(&self, names: &Names, port: u16) -> Result<ExecutorClient, RuntimeError> {
        let pod = self.pods.get_opt(&names.pod).await.map_err(|e| api_error("read pod", e))?;
        let pod =
            pod.ok_or_else(|| RuntimeError::Engine(format!("sandbox pod {} does not exist", names.pod)))?;
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
        let ip =
            ip.ok_or_else(|| RuntimeError::Engine(format!("sandbox pod {} has no IP address", names.pod)))?;
        let secret = self.secrets.get_opt(&names.secret).await.map_err(|e| api_error("read secret", e))?;
        let token = secret.as_ref().and_then(token_of).ok_or_else(|| {
            RuntimeError::Engine(format!("secret {} with the executor token does not exist", names.secret))
        })?;
        Ok(ExecutorClient::tcp(SocketAddr::new(ip, port), token))
    }
}

/// Deletes a half-created sandbox when dropped armed: a failed create disarms it after cleaning
/// up itself; a create future dropped mid-way (the caller's timeout) leaves the cleanup to a task.
struct CleanupGuard {
    apis: Option<Apis>,
    names: Names,
}

impl CleanupGuard {
    fn disarm(mut self) {
        self.apis = None;
    }

    async fn run(mut self) {
        if let Some(apis) = self.apis.take() {
            cleanup(apis, self.names.clone()).await;
        }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if let Some(apis) = self.apis.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(cleanup(apis, self.names.clone()));
        }
    }
}

async fn cleanup(apis: Apis, names: Names) {
    if let Err(e) = apis.delete_all(&names).await {
        tracing::warn!(pod = %names.pod, error = %e, "could not remove a sandbox that failed to start");
    }
}

fn api_error(what: &str, e: kube::Error) -> RuntimeError {
    match e {
        kube::Error::Api(s) => {
            RuntimeError::Engine(format!("{what}: {} {}: {}", s.code, s.reason, s.message))
        }
        other => RuntimeError::Unavailable(format!("{what}: {other}")),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn ignore_missing(r: Result<(), kube::Error>, what: &str) -> Result<(), RuntimeError> {
    match r {
        Err(e) if !is_status(&e, 404) => Err(api_error(what, e)),
        _ => Ok(()),
    }
}

fn token_of(secret: &Secret) -> Option<String> {
    let bytes = &secret.data.as_ref()?.get(objects::TOKEN_KEY)?.0;
    String::from_utf8(bytes.clone()).ok().filter(|t| !t.is_empty())
}

/// 32 random bytes as 64 hex digits.
fn new_token() -> Result<String, RuntimeError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| RuntimeError::Engine(format!("no randomness for the token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn watch_forbidden(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => is_status(k, 403),
        watcher::Error::WatchError(s) => s.code == 403,
        watcher::Error::NoResourceVersion => false,
    }
}

/// The label selector for managed sandboxes carrying all of `wanted`.
fn selector(wanted: &[(&str, &str)]) -> Result<String, RuntimeError> {
    let mut s = format!("{}=true", labels::MANAGED);
    for (k, v) in wanted {
        if !objects::is_label_key(k) || !objects::is_label_value(v) {
            return Err(RuntimeError::Invalid(format!("label {k}={v:?} is not a valid Kubernetes label")));
        }
        s.push_str(&format!(",{k}={v}"));
    }
    Ok(s)
}

/// Builds a client the way `cfg.client` says.
async fn load_client(cfg: &KubernetesConfig) -> Result<Client, RuntimeError> {
    // With more than one rustls provider linked in, TLS needs a process default; keep one that
    // is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let unavailable =
        |what: &str, e: &dyn std::fmt::Display| RuntimeError::Unavailable(format!("{what}: {e}"));
    let config = match cfg.client {
        ClientSource::Default => Config::infer()
            .await
            .map_err(|e| unavailable("no kubeconfig and not running in a cluster", &e))?,
        ClientSource::InCluster => {
            Config::incluster().map_err(|e| unavailable("not running in a cluster (service account)", &e))?
        }
        ClientSource::Kubeconfig => {
            let opts = kube::config::KubeConfigOptions { context: cfg.context.clone(), ..Default::default() };
            match &cfg.kubeconfig {
                Some(path) => {
                    let file = kube::config::Kubeconfig::read_from(path)
                        .map_err(|e| unavailable(&format!("kubeconfig {}", path.display()), &e))?;
                    Config::from_custom_kubeconfig(file, &opts).await
                }
                None => Config::from_kubeconfig(&opts).await,
            }
            .map_err(|e| unavailable("kubeconfig", &e))?
        }
    };
    Client::try_from(config).map_err(|e| unavailable("kubernetes client", &e))
}

impl KubernetesRuntime {
    /// Connects to the cluster as `cfg.client` says, checks the sandbox namespace can be read,
    /// learns the executors of sandboxes that already run (a restarted control plane), and
    /// warns when no NetworkPolicy isolates the sandboxes.
    pub async fn connect(cfg: KubernetesConfig) -> Result<Self, RuntimeError> {
        cfg.validate()?;
        let client = load_client(&cfg).await?;
        let rt = Self::with_client(client, cfg)?;
        let known = rt.refresh_executors().await?;
        match rt.network_policy_present().await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                namespace = %rt.cfg.namespace,
                "no NetworkPolicy denies egress from sandbox pods; install deploy/helm/sandbox or deploy/manifests"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read NetworkPolicies of the sandbox namespace"),
        }
        tracing::info!(namespace = %rt.cfg.namespace, running = known, "kubernetes runtime ready");
        Ok(rt)
    }

    /// A backend on an existing client (tests use a mock service). Makes no request.
    pub fn with_client(client: Client, cfg: KubernetesConfig) -> Result<Self, RuntimeError> {
        cfg.validate()?;
        Ok(KubernetesRuntime {
            apis: Apis::new(client, &cfg.namespace),
            cfg: Arc::new(cfg),
            executors: ExecutorCache::default(),
        })
    }

    /// The kube client, for callers that need more than the trait offers.
    pub fn client(&self) -> &Client {
        &self.apis.client
    }

    /// The settings in use.
    pub fn config(&self) -> &KubernetesConfig {
        &self.cfg
    }

    /// Learns the executor address and token of every running managed pod (one list of pods and
    /// one of Secrets), so [`Runtime::executor`] answers for them; returns how many it knows.
    pub async fn refresh_executors(&self) -> Result<usize, RuntimeError> {
        let lp = ListParams::default().labels(&selector(&[])?);
        let pods = self.apis.pods.list(&lp).await.map_err(|e| api_error("list pods", e))?;
        let secrets = self.apis.secrets.list(&lp).await.map_err(|e| api_error("list secrets", e))?;
        let tokens: HashMap<String, String> =
            secrets.items.iter().filter_map(|s| Some((s.metadata.name.clone()?, token_of(s)?))).collect();
        let mut cache = self.executors.lock().expect("executor cache lock");
        for pod in &pods.items {
            let Some(name) = pod.metadata.name.as_deref() else { continue };
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
            if let (Some(ip), Some(token)) = (ip, tokens.get(&Names::for_pod(name).secret)) {
                let addr = SocketAddr::new(ip, self.cfg.executor_port);
                cache.insert(name.to_owned(), ExecutorClient::tcp(addr, token.clone()));
            }
        }
        Ok(cache.len())
    }

    /// Whether a NetworkPolicy in the sandbox namespace restricts egress of sandbox pods (one
    /// whose pod selector is empty or asks only for labels every sandbox pod carries). The
    /// control plane may read NetworkPolicies but never write them: a policy it could create
    /// could also open the sandboxes up.
    pub async fn network_policy_present(&self) -> Result<bool, RuntimeError> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.apis.client.clone(), &self.cfg.namespace);
        let list =
            api.list(&ListParams::default()).await.map_err(|e| api_error("list network policies", e))?;
        let sandbox_labels = [(labels::MANAGED, "true"), (objects::APP_NAME_LABEL, objects::APP_NAME)];
        Ok(list.items.iter().filter_map(|p| p.spec.as_ref()).any(|spec| {
            let egress = spec.policy_types.as_ref().is_some_and(|t| t.iter().any(|t| t == "Egress"));
            let selector = spec.pod_selector.as_ref();
            let expressions =
                selector.and_then(|s| s.match_expressions.as_ref()).is_some_and(|e| !e.is_empty());
            let selects_sandboxes = selector
                .and_then(|s| s.match_labels.as_ref())
                .is_none_or(|m| m.iter().all(|(k, v)| sandbox_labels.contains(&(k.as_str(), v.as_str()))));
            egress && !expressions && selects_sandboxes
        }))
    }

    /// Waits until the pod `pod` is Ready and its executor answers with `token`, writing what it
    /// last saw into `seen` (for the timeout message).
    async fn wait_ready(
        &self,
        pod: &str,
        token: String,
        seen: &mut String,
    ) -> Result<ExecutorClient, RuntimeError> {
        let mut watch = std::pin::pin!(watcher::watch_object(self.apis.pods.clone(), pod));
        let mut errors = 0u32;
        let ip = loop {
            let event =
                watch.next().await.ok_or_else(|| RuntimeError::Engine("the pod watch ended".into()))?;
            match event {
                Err(e) if watch_forbidden(&e) => {
                    return Err(RuntimeError::Engine(format!(
                        "cannot watch pods in namespace {}: {e}; the control plane's Role must allow get, list \
                         and watch on pods",
                        self.cfg.namespace
                    )));
                }
                Err(e) => {
                    // The watcher re-lists or re-watches on the next poll; back off a little.
                    errors += 1;
                    tracing::debug!(pod, error = %e, "pod watch interrupted; watching again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(errors.min(20)))).await;
                }
                Ok(None) => {
                    return Err(RuntimeError::StartFailed(format!("pod {pod} was deleted while starting")));
                }
                Ok(Some(p)) => match pod_state::progress(&p) {
                    Progress::Ready(ip) => break ip,
                    Progress::Starting(s) => *seen = s,
                    Progress::Failed { reason, mut message, ran } => {
                        if ran
                            && let Ok(logs) = self.logs(pod, 20).await
                            && !logs.trim().is_empty()
                        {
                            message = format!("{message}; logs: {}", logs.trim());
                        }
                        return Err(RuntimeError::PodFailed { pod: pod.to_owned(), reason, message });
                    }
                },
            }
        };
        let addr = SocketAddr::new(ip, self.cfg.executor_port);
        let executor = ExecutorClient::tcp(addr, token);
        loop {
            match executor.health().await {
                Ok(_) => return Ok(executor),
                Err(
                    e @ (ClientError::Api { status: 401 | 403, .. }
                    | ClientError::IncompatibleProtocol { .. }),
                ) => {
                    return Err(RuntimeError::StartFailed(format!("the executor at {addr} refused: {e}")));
                }
                Err(e) => {
                    *seen = format!(
                        "pod is Ready but its executor at {addr} does not answer ({e}); the NetworkPolicy must \
                         admit the control plane on port {}",
                        self.cfg.executor_port
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn forget(&self, pod: &str) {
        self.executors.lock().expect("executor cache lock").remove(pod);
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        let token = new_token()?;
        let objects = objects::build(spec, &self.cfg, &token)?;
        let names = objects.names.clone();
        let guard = CleanupGuard { apis: Some(self.apis.clone()), names: names.clone() };
        let started = async {
            let pp = PostParams::default();
            self.apis
                .secrets
                .create(&pp, &objects.secret)
                .await
                .map_err(|e| api_error("create secret", e))?;
            if let Some(pvc) = &objects.pvc {
                self.apis.pvcs.create(&pp, pvc).await.map_err(|e| api_error("create claim", e))?;
            }
            self.apis.pods.create(&pp, &objects.pod).await.map_err(|e| api_error("create pod", e))?;
            let mut seen = String::from("pod created");
            let waited =
                tokio::time::timeout(self.cfg.ready_timeout(), self.wait_ready(&names.pod, token, &mut seen))
                    .await;
            waited.unwrap_or_else(|_| {
                Err(RuntimeError::NotReady { seconds: self.cfg.ready_timeout_secs, reason: seen })
            })
        };
        match started.await {
            Ok(executor) => {
                guard.disarm();
                self.executors
                    .lock()
                    .expect("executor cache lock")
                    .insert(names.pod.clone(), executor.clone());
                tracing::info!(sandbox = %spec.name, pod = %names.pod, "sandbox ready");
                Ok(Sandbox { id: names.pod, name: spec.name.clone(), executor })
            }
            Err(e) => {
                guard.run().await;
                Err(e)
            }
        }
    }

    async fn stop(&self, id: &str) -> Result<(), RuntimeError> {
        // A pod cannot be stopped and kept; the Secret and claim stay until `remove`.
        self.forget(id);
        let dp = DeleteParams::default().grace_period(objects::TERMINATION_GRACE_SECS as u32);
        ignore_missing(self.apis.pods.delete(id, &dp).await.map(drop), "delete pod")
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        self.apis.delete_all(&Names::for_pod(id)).await
    }

    async fn status(&self, id: &str) -> Result<Option<SandboxInfo>, RuntimeError> {
        let pod = self.apis.pods.get_opt(id).await.map_err(|e| api_error("read pod", e))?;
        Ok(pod.as_ref().map(pod_state::info))
    }

    async fn list(&self, wanted: &[(&str, &str)]) -> Result<Vec<SandboxInfo>, RuntimeError> {
        let lp = ListParams::default().labels(&selector(wanted)?);
        let pods = self.apis.pods.list(&lp).await.map_err(|e| api_error("list pods", e))?;
        Ok(pods.items.iter().map(pod_state::info).collect())
    }

    async fn logs(&self, id: &str, tail: usize) -> Result<String, RuntimeError> {
        let lp = LogParams {
            container: Some(objects::EXECUTOR_CONTAINER.into()),
            tail_lines: Some(i64::try_from(tail).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        match self.apis.pods.logs(id, &lp).await {
            Ok(text) => Ok(text),
            // Gone, or not started yet (400: the container is waiting): no logs.
            Err(e) if is_status(&e, 404) || is_status(&e, 400) => Ok(String::new()),
            Err(e) => Err(api_error("read logs", e)),
        }
    }

    /// Answers from what this replica knows (sandboxes it created or found at start-up). For an
    /// unknown sandbox it starts resolving it in the background and returns a client that fails
    /// at once; [`Runtime::resolve_executor`] waits for the answer instead.
    fn executor(&self, spec: &SandboxSpec) -> ExecutorClient {
        let names = Names::for_sandbox(&spec.name);
        if let Some(known) = self.executors.lock().expect("executor cache lock").get(&names.pod) {
            return known.clone();
        }
        tracing::warn!(pod = %names.pod, "executor not known yet; resolving it in the background");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (apis, cache, port) = (self.apis.clone(), self.executors.clone(), self.cfg.executor_port);
            handle.spawn(async move {
                match apis.resolve(&names, port).await {
                    Ok(client) => {
                        cache.lock().expect("executor cache lock").insert(names.pod, client);
                    }
                    Err(e) => tracing::warn!(pod = %names.pod, error = %e, "cannot resolve the executor"),
                }
            });
        }
        ExecutorClient::tcp(UNRESOLVED, String::new())
    }

    async fn resolve_executor(&self, spec: &SandboxSpec) -> Result<ExecutorClient, RuntimeError> {
        let names = Names::for_sandbox(&spec.name);
        if let Some(known) = self.executors.lock().expect("executor cache lock").get(&names.pod) {
            return Ok(known.clone());
        }
        let client = self.apis.resolve(&names, self.cfg.executor_port).await?;
        self.executors.lock().expect("executor cache lock").insert(names.pod, client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hex() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn selectors_always_ask_for_managed_sandboxes() {
        assert_eq!(selector(&[]).unwrap(), "io.sandbox.managed=true");
        assert_eq!(
            selector(&[("io.sandbox.session", "sess_1"), ("io.sandbox.deployment", "abc")]).unwrap(),
            "io.sandbox.managed=true,io.sandbox.session=sess_1,io.sandbox.deployment=abc"
        );
        assert!(matches!(selector(&[("io.sandbox.session", "a,b=c")]), Err(RuntimeError::Invalid(_))));
    }
}
