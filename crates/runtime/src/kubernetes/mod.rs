//! The Kubernetes backend (kube-rs): one hardened pod per sandbox; the control plane reaches the
//! executor over TCP at the pod's IP with a per-sandbox bearer token kept in a Secret.
//!
//! A sandbox's id is its pod's name, a fixed-length hash of the whole sandbox name
//! ([`objects::pod_name`]); the token Secret (`<pod>-token`) and workspace claim
//! (`<pod>-workspace`) are named after it, so [`Runtime::remove`] needs nothing but the id. Every
//! object also carries the sandbox name verbatim (annotation `io.sandbox.sandbox`), and the
//! backend reads, changes or deletes an object only after that annotation shows it belongs to
//! the sandbox in question ([`objects::owner`]); deletions name the object's uid, so an object
//! that replaced it under the same name is left alone.
//!
//! Creating a sandbox makes the Secret, the claim (in `pvc` mode) and the pod, then *watches* the
//! pod (re-watching when the stream ends or fails) until it is Ready — its readiness probe is the
//! executor's TCP port, which the executor opens only after proving its sandbox works — and
//! finally checks the executor's health with the token. Failures that will not heal
//! (unschedulable, image pull errors, refused configuration, the pod failing) end the wait at
//! once with Kubernetes' reason and message; what this create made, and nothing else, is deleted
//! again, also when the caller gives up and drops the future.

pub mod config;
pub mod objects;
mod pod_state;

pub use config::KubernetesConfig;
pub use objects::{
    ControlPlaneSelector, EgressAccess, EgressProxySelector, Names, SandboxObject, network_policy,
};

use crate::spec::{SandboxInfo, SandboxSpec};
use crate::{ExecutorClient, Runtime, RuntimeError, Sandbox, labels};
use async_trait::async_trait;
use config::ClientSource;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, Config, Resource};
use pod_state::Progress;
use sandbox_egress::EgressKey;
use sandbox_executor_client::ClientError;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Seconds a removed pod gets to stop (the shortest graceful deletion; `0` would force-delete).
const REMOVE_GRACE_SECS: u32 = 1;
/// Where [`Runtime::executor`] points before it knows a sandbox: connecting fails at once.
const UNRESOLVED: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// An executor this replica knows.
#[derive(Clone)]
struct Known {
    /// The sandbox's pod.
    pod: String,
    /// A client for its executor.
    client: ExecutorClient,
}

/// Known executors by sandbox name (never by a name derived from it: the first naming scheme
/// gave two sandboxes the same pod name).
type ExecutorCache = Arc<Mutex<HashMap<String, Known>>>;

/// The Kubernetes backend.
pub struct KubernetesRuntime {
    apis: Apis,
    cfg: Arc<KubernetesConfig>,
    executors: ExecutorCache,
    egress: Option<EgressProxy>,
}

/// The egress proxy sandbox pods are pointed at ([`KubernetesConfig::egress_proxy_service`]).
struct EgressProxy {
    /// The Services of the proxy's namespace.
    services: Api<Service>,
    /// The proxy's Service.
    name: String,
    /// Makes each pod's credential.
    key: EgressKey,
}

impl EgressProxy {
    /// The proxy Service's cluster IP and `proxy` port, read now (a Service made anew gets
    /// another address), and the credential of the pod `pod`.
    async fn access(&self, pod: &str) -> Result<EgressAccess, RuntimeError> {
        let service = self
            .services
            .get(&self.name)
            .await
            .map_err(|e| api_error("read the egress proxy's service", e))?;
        let spec = service.spec.unwrap_or_default();
        let ip = spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok());
        let port =
            spec.ports.iter().flatten().find(|p| p.name.as_deref() == Some(objects::EGRESS_PROXY_PORT_NAME));
        let (Some(ip), Some(port)) = (ip, port.and_then(|p| u16::try_from(p.port).ok())) else {
            return Err(RuntimeError::Engine(format!(
                "the egress proxy's service {} has no cluster IP or no port named {:?}",
                self.name,
                objects::EGRESS_PROXY_PORT_NAME
            )));
        };
        Ok(EgressAccess { proxy: SocketAddr::new(ip, port), credential: self.key.credential(pod) })
    }
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

    /// Deletes the pod `names.pod`, then its Secret and claim, each only if it belongs to a
    /// sandbox whose objects have these names ([`objects::owner`]); objects already gone are
    /// fine. Tries all three, and reports the first failure.
    async fn remove_owned(&self, names: &Names) -> Result<(), RuntimeError> {
        let pod = delete_owned(&self.pods, &names.pod, REMOVE_GRACE_SECS).await;
        let secret = delete_owned(&self.secrets, &names.secret, REMOVE_GRACE_SECS).await;
        let pvc = delete_owned(&self.pvcs, &names.pvc, REMOVE_GRACE_SECS).await;
        pod.and(secret).and(pvc)
    }

    /// Reads the executor address and token of the sandbox `sandbox` from its pod and Secret,
    /// under its names or the first scheme's (pods made before names were hashes).
    async fn resolve(&self, sandbox: &str, port: u16) -> Result<Known, RuntimeError> {
        for names in Names::candidates(sandbox) {
            let Some(pod) = get_owned(&self.pods, &names.pod, sandbox).await? else { continue };
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
            let ip = ip.ok_or_else(|| {
                RuntimeError::Engine(format!("sandbox pod {} has no IP address", names.pod))
            })?;
            let secret = get_owned(&self.secrets, &names.secret, sandbox).await?;
            let token = secret.as_ref().and_then(token_of).ok_or_else(|| {
                RuntimeError::Engine(format!(
                    "secret {} with the executor token does not exist",
                    names.secret
                ))
            })?;
            let client = ExecutorClient::tcp(SocketAddr::new(ip, port), token);
            return Ok(Known { pod: names.pod, client });
        }
        Err(RuntimeError::Engine(format!("sandbox pod {} does not exist", objects::pod_name(sandbox))))
    }
}

/// Reads `name` from `api`: `None` unless it exists and belongs to the sandbox `sandbox`.
async fn get_owned<K>(api: &Api<K>, name: &str, sandbox: &str) -> Result<Option<K>, RuntimeError>
where
    K: SandboxObject + Clone + DeserializeOwned + Debug,
{
    let found = api.get_opt(name).await.map_err(|e| api_error(&format!("read {}", K::WHAT), e))?;
    Ok(found.filter(|o| objects::owner(o) == Some(sandbox)))
}

/// Deletes `name` from `api` if it belongs to a sandbox whose objects are named so, and only
/// the very object read (its uid); a missing one is fine, anything else is left alone.
async fn delete_owned<K>(api: &Api<K>, name: &str, grace: u32) -> Result<(), RuntimeError>
where
    K: SandboxObject + Clone + DeserializeOwned + Debug,
{
    let found = api.get_opt(name).await.map_err(|e| api_error(&format!("read {}", K::WHAT), e))?;
    match found {
        Some(o) if objects::owner(&o).is_some() => delete_exact(api, &Made::of(&o), grace).await,
        Some(_) => {
            tracing::warn!(name, kind = K::WHAT, "not a sandbox's object; left alone");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Deletes `made` from `api` if the name still holds that object (its uid): gone (404) or
/// replaced by another object (409, the precondition failed) is fine.
async fn delete_exact<K>(api: &Api<K>, made: &Made, grace: u32) -> Result<(), RuntimeError>
where
    K: SandboxObject + Clone + DeserializeOwned + Debug,
{
    let dp = DeleteParams {
        grace_period_seconds: Some(grace),
        preconditions: Some(Preconditions { uid: made.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&made.name, &dp).await {
        Err(e) if !is_status(&e, 404) && !is_status(&e, 409) => {
            Err(api_error(&format!("delete {}", K::WHAT), e))
        }
        _ => Ok(()),
    }
}

/// One object by name and uid.
#[derive(Debug)]
struct Made {
    name: String,
    uid: Option<String>,
}

impl Made {
    fn of<K: Resource>(obj: &K) -> Self {
        Made { name: obj.meta().name.clone().unwrap_or_default(), uid: obj.meta().uid.clone() }
    }
}

/// What one create has made so far.
#[derive(Debug, Default)]
struct MadeSandbox {
    secret: Option<Made>,
    pvc: Option<Made>,
    pod: Option<Made>,
}

impl MadeSandbox {
    /// Deletes what was made, the pod first; tries all, reports the first failure.
    async fn undo(&self, apis: &Apis) -> Result<(), RuntimeError> {
        async fn one<K>(api: &Api<K>, made: Option<&Made>) -> Result<(), RuntimeError>
        where
            K: SandboxObject + Clone + DeserializeOwned + Debug,
        {
            match made {
                Some(m) => delete_exact(api, m, REMOVE_GRACE_SECS).await,
                None => Ok(()),
            }
        }
        let pod = one(&apis.pods, self.pod.as_ref()).await;
        let secret = one(&apis.secrets, self.secret.as_ref()).await;
        let pvc = one(&apis.pvcs, self.pvc.as_ref()).await;
        pod.and(secret).and(pvc)
    }
}

/// Deletes what a create made when dropped armed: a failed create disarms it after cleaning up
/// itself; a create future dropped mid-way (the caller's timeout) leaves the cleanup to a task.
struct CleanupGuard {
    apis: Option<Apis>,
    /// The pod's name, for the log.
    pod: String,
    made: MadeSandbox,
}

impl CleanupGuard {
    fn disarm(mut self) {
        self.apis = None;
    }

    async fn run(mut self) {
        if let Some(apis) = self.apis.take() {
            cleanup(apis, std::mem::take(&mut self.pod), std::mem::take(&mut self.made)).await;
        }
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if let Some(apis) = self.apis.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(cleanup(apis, std::mem::take(&mut self.pod), std::mem::take(&mut self.made)));
        }
    }
}

async fn cleanup(apis: Apis, pod: String, made: MadeSandbox) {
    if let Err(e) = made.undo(&apis).await {
        tracing::warn!(pod = %pod, error = %e, "could not remove a sandbox that failed to start");
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

/// The label selector for managed sandboxes carrying all of `wanted` (values as
/// [`objects::label_value`] stores them, so a selection may hold more than `wanted`: compare the
/// full values afterwards).
fn selector(wanted: &[(&str, &str)]) -> Result<String, RuntimeError> {
    let mut s = format!("{}=true", labels::MANAGED);
    for (k, v) in wanted {
        if !objects::is_label_key(k) {
            return Err(RuntimeError::Invalid(format!(
                "label key {k:?} is not a valid Kubernetes label key"
            )));
        }
        s.push_str(&format!(",{k}={}", objects::label_value(v)));
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

    /// A backend on an existing client (tests use a mock service). Makes no request; reads the
    /// egress key when egress is configured.
    pub fn with_client(client: Client, cfg: KubernetesConfig) -> Result<Self, RuntimeError> {
        cfg.validate()?;
        let egress = match (cfg.egress_proxy()?, &cfg.egress_key_file) {
            (Some((namespace, name)), Some(file)) => Some(EgressProxy {
                services: Api::namespaced(client.clone(), namespace),
                name: name.to_owned(),
                key: EgressKey::from_file(file)
                    .map_err(|e| RuntimeError::Invalid(format!("kubernetes.{e}")))?,
            }),
            _ => None,
        };
        Ok(KubernetesRuntime {
            apis: Apis::new(client, &cfg.namespace),
            cfg: Arc::new(cfg),
            executors: ExecutorCache::default(),
            egress,
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
    /// one of Secrets, each pod paired with the Secret of the same sandbox), so
    /// [`Runtime::executor`] answers for them; returns how many it knows.
    pub async fn refresh_executors(&self) -> Result<usize, RuntimeError> {
        let lp = ListParams::default().labels(&selector(&[])?);
        let pods = self.apis.pods.list(&lp).await.map_err(|e| api_error("list pods", e))?;
        let secrets = self.apis.secrets.list(&lp).await.map_err(|e| api_error("list secrets", e))?;
        let tokens: HashMap<&str, (&str, String)> = secrets
            .items
            .iter()
            .filter_map(|s| Some((s.metadata.name.as_deref()?, (objects::owner(s)?, token_of(s)?))))
            .collect();
        let mut cache = self.executors.lock().expect("executor cache lock");
        for pod in &pods.items {
            let (Some(name), Some(sandbox)) = (pod.metadata.name.as_deref(), objects::owner(pod)) else {
                continue;
            };
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok());
            let token =
                tokens.get(Names::for_pod(name).secret.as_str()).filter(|(owner, _)| *owner == sandbox);
            if let (Some(ip), Some((_, token))) = (ip, token) {
                let client = ExecutorClient::tcp(SocketAddr::new(ip, self.cfg.executor_port), token.clone());
                cache.insert(sandbox.to_owned(), Known { pod: name.to_owned(), client });
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
        self.executors.lock().expect("executor cache lock").retain(|_, known| known.pod != pod);
    }

    fn known(&self, sandbox: &str) -> Option<ExecutorClient> {
        self.executors.lock().expect("executor cache lock").get(sandbox).map(|k| k.client.clone())
    }
}

#[async_trait]
impl Runtime for KubernetesRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        let token = new_token()?;
        let egress = match &self.egress {
            Some(proxy) => Some(proxy.access(&objects::pod_name(&spec.name)).await?),
            None => None,
        };
        let objects = objects::build(spec, &self.cfg, &token, egress.as_ref())?;
        let names = objects.names.clone();
        let mut guard = CleanupGuard {
            apis: Some(self.apis.clone()),
            pod: names.pod.clone(),
            made: MadeSandbox::default(),
        };
        let made = &mut guard.made;
        let started = async {
            let pp = PostParams::default();
            let secret = self
                .apis
                .secrets
                .create(&pp, &objects.secret)
                .await
                .map_err(|e| api_error("create secret", e))?;
            made.secret = Some(Made::of(&secret));
            if let Some(pvc) = &objects.pvc {
                let pvc = self.apis.pvcs.create(&pp, pvc).await.map_err(|e| api_error("create claim", e))?;
                made.pvc = Some(Made::of(&pvc));
            }
            let pod =
                self.apis.pods.create(&pp, &objects.pod).await.map_err(|e| api_error("create pod", e))?;
            made.pod = Some(Made::of(&pod));
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
                let known = Known { pod: names.pod.clone(), client: executor.clone() };
                self.executors.lock().expect("executor cache lock").insert(spec.name.clone(), known);
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
        delete_owned(&self.apis.pods, id, objects::TERMINATION_GRACE_SECS as u32).await
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        self.apis.remove_owned(&Names::for_pod(id)).await
    }

    async fn status(&self, id: &str) -> Result<Option<SandboxInfo>, RuntimeError> {
        let pod = self.apis.pods.get_opt(id).await.map_err(|e| api_error("read pod", e))?;
        Ok(pod.filter(|p| objects::owner(p).is_some()).as_ref().map(pod_state::info))
    }

    async fn list(&self, wanted: &[(&str, &str)]) -> Result<Vec<SandboxInfo>, RuntimeError> {
        let lp = ListParams::default().labels(&selector(wanted)?);
        let pods = self.apis.pods.list(&lp).await.map_err(|e| api_error("list pods", e))?;
        Ok(pods
            .items
            .iter()
            .filter(|p| objects::owner(*p).is_some())
            .map(pod_state::info)
            .filter(|info| wanted.iter().all(|(k, v)| info.labels.get(*k).is_some_and(|have| have == v)))
            .collect())
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
        if let Some(known) = self.known(&spec.name) {
            return known;
        }
        tracing::warn!(sandbox = %spec.name, "executor not known yet; resolving it in the background");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (apis, cache, port) = (self.apis.clone(), self.executors.clone(), self.cfg.executor_port);
            let sandbox = spec.name.clone();
            handle.spawn(async move {
                match apis.resolve(&sandbox, port).await {
                    Ok(known) => {
                        cache.lock().expect("executor cache lock").insert(sandbox, known);
                    }
                    Err(e) => tracing::warn!(sandbox, error = %e, "cannot resolve the executor"),
                }
            });
        }
        ExecutorClient::tcp(UNRESOLVED, String::new())
    }

    async fn resolve_executor(&self, spec: &SandboxSpec) -> Result<ExecutorClient, RuntimeError> {
        if let Some(known) = self.known(&spec.name) {
            return Ok(known);
        }
        let known = self.apis.resolve(&spec.name, self.cfg.executor_port).await?;
        let client = known.client.clone();
        self.executors.lock().expect("executor cache lock").insert(spec.name.clone(), known);
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
        // A value no label can hold is selected by its hash, never spliced into the selector.
        assert_eq!(
            selector(&[("io.sandbox.session", "a,b=c")]).unwrap(),
            format!("io.sandbox.managed=true,io.sandbox.session={}", objects::label_value("a,b=c"))
        );
        assert!(matches!(selector(&[("a b", "x")]), Err(RuntimeError::Invalid(_))));
    }
}
