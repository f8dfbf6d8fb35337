//! Templates whose image the Docker host lacks, against the real server, real Docker and a
//! small registry (HTTP API v2) on 127.0.0.1 serving a local image: the image is pulled with
//! its progress shown, sessions wait for it, a pull that fails says why, a pull a restart
//! interrupts starts again, and with pulling off such a template is refused.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode as AxumStatus, Uri, header};
use axum::response::{IntoResponse, Response};
use common::{Server, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The executor image the served one is made from.
fn source_image() -> String {
    format!("{}sandbox/python-basic:latest", std::env::var("IMAGE_PREFIX").unwrap_or_default())
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn file_digest(path: &Path) -> (String, u64) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).unwrap();
    (format!("sha256:{:x}", h.finalize()), n)
}

/// A registry serving one repository: each tag an image made of the source image's layers and
/// a config of its own (another label per tag, so Docker has not got it yet). Blob downloads
/// wait while the gate is closed.
struct Registry {
    addr: std::net::SocketAddr,
    repository: String,
    /// Blob requests seen.
    blob_requests: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

struct Served {
    repository: String,
    /// Manifests by tag and by digest: (digest, body).
    manifests: HashMap<String, (String, Vec<u8>)>,
    /// Blob files by digest.
    blobs: HashMap<String, PathBuf>,
    blob_requests: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
}

impl Registry {
    /// Serves `tags` of a repository unique to this run: each the source image (exported from
    /// Docker) when `from_source`, or an image of one layer, plus a layer of the tag's own.
    async fn start(from_source: bool, tags: &[&str]) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut blobs = HashMap::new();
        let mut layers = Vec::new();
        let config = if from_source {
            let (config, base) = export_source(dir.path());
            for (digest, size, path) in base {
                // `docker save` writes layers uncompressed: the blob's digest is the diff id,
                // and Docker takes an uncompressed stream where it expects gzip.
                layers.push(json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size, "digest": digest}));
                blobs.insert(digest, path);
            }
            config
        } else {
            json!({"architecture": "amd64", "os": "linux", "config": {},
                   "rootfs": {"type": "layers", "diff_ids": []}, "history": []})
        };
        let repository = format!("tpl-e2e-{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis());
        let mut manifests = HashMap::new();
        for tag in tags {
            let mut config = config.clone();
            config["config"]["Labels"]["sandbox.test.variant"] = json!(format!("{repository}-{tag}"));
            // A layer of this run's own, so Docker has to download something (it has the
            // source image's layers already).
            let path = dir.path().join(format!("layer-{tag}.tar"));
            unique_layer(&path, &format!("{repository}-{tag}"));
            let (digest, size) = file_digest(&path);
            let mut layers = layers.clone();
            layers.push(json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": size, "digest": digest}));
            config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(json!(digest));
            config["history"].as_array_mut().unwrap().push(json!({"created_by": "a layer of this test run"}));
            blobs.insert(digest, path);
            let bytes = serde_json::to_vec(&config).unwrap();
            let digest = sha256_hex(&bytes);
            let path = dir.path().join(format!("config-{tag}.json"));
            std::fs::write(&path, &bytes).unwrap();
            blobs.insert(digest.clone(), path);
            let m = json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": bytes.len(), "digest": digest},
                "layers": layers,
            });
            let body = serde_json::to_vec(&m).unwrap();
            let digest = sha256_hex(&body);
            manifests.insert(tag.to_string(), (digest.clone(), body.clone()));
            manifests.insert(digest.clone(), (digest, body));
        }
        let blob_requests = Arc::new(AtomicUsize::new(0));
        let (gate, gate_rx) = watch::channel(false);
        let served = Arc::new(Served {
            repository: repository.clone(),
            manifests,
            blobs,
            blob_requests: blob_requests.clone(),
            gate: gate_rx,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
            let served = served.clone();
            async move { serve(&served, &method, uri.path()).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Registry { addr, repository, blob_requests, gate, _dir: dir }
    }

    /// `127.0.0.1:PORT/repository:tag`.
    fn image(&self, tag: &str) -> String {
        format!("{}/{}:{tag}", self.addr, self.repository)
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn close(&self) {
        self.gate.send_replace(false);
    }
}

/// `docker save` of the source image into `dir`: its config, and its layers' digests, sizes and
/// files.
fn export_source(dir: &Path) -> (Value, Vec<(String, u64, PathBuf)>) {
    let archive = dir.join("image.tar");
    let saved =
        Command::new("docker").args(["save", "-o"]).arg(&archive).arg(source_image()).status().unwrap();
    assert!(saved.success(), "docker save {}", source_image());
    let unpacked = dir.join("image");
    tar::Archive::new(std::fs::File::open(&archive).unwrap()).unpack(&unpacked).unwrap();
    std::fs::remove_file(&archive).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let config_file = unpacked.join(manifest[0]["Config"].as_str().unwrap());
    let config = serde_json::from_slice(&std::fs::read(config_file).unwrap()).unwrap();
    let layers = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let path = unpacked.join(layer.as_str().unwrap());
            let (digest, size) = file_digest(&path);
            (digest, size, path)
        })
        .collect();
    (config, layers)
}

/// A layer holding one 8 MiB file whose content is unique to `seed`.
fn unique_layer(path: &Path, seed: &str) {
    let mut content = Vec::with_capacity(8 << 20);
    let mut x = u64::from_le_bytes(Sha256::digest(seed.as_bytes())[..8].try_into().unwrap()) | 1;
    while content.len() < 8 << 20 {
        // xorshift: bytes that do not compress, so the registry really sends them.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        content.extend_from_slice(&x.to_le_bytes());
    }
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "sandbox-test-layer.bin", content.as_slice()).unwrap();
    builder.into_inner().unwrap();
}

fn not_found(code: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": code.to_lowercase().replace('_', " ")}]});
    (AxumStatus::NOT_FOUND, axum::Json(body)).into_response()
}

/// The registry API: `/v2/`, `/v2/<name>/manifests/<ref>` and `/v2/<name>/blobs/<digest>`.
async fn serve(served: &Served, method: &Method, path: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("docker-distribution-api-version", "registry/2.0".parse().unwrap());
    let Some(rest) = path.strip_prefix("/v2/") else { return not_found("NAME_UNKNOWN") };
    if rest.is_empty() {
        return (headers, "{}").into_response();
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let Some((digest, body)) = served.manifests.get(reference).filter(|_| name == served.repository)
        else {
            return not_found("MANIFEST_UNKNOWN");
        };
        headers.insert(header::CONTENT_TYPE, MANIFEST_TYPE.parse().unwrap());
        headers.insert("docker-content-digest", digest.parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, body.len().into());
        let body = if method == Method::HEAD { Body::empty() } else { Body::from(body.clone()) };
        return (headers, body).into_response();
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        let Some(path) = served.blobs.get(digest).filter(|_| name == served.repository) else {
            return not_found("BLOB_UNKNOWN");
        };
        served.blob_requests.fetch_add(1, Ordering::SeqCst);
        let mut gate = served.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        let file = tokio::fs::File::open(path).await.unwrap();
        let len = file.metadata().await.unwrap().len();
        headers.insert(header::CONTENT_TYPE, "application/octet-stream".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, len.into());
        headers.insert("docker-content-digest", digest.parse().unwrap());
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from_stream(tokio_util::io::ReaderStream::new(file))
        };
        return (headers, body).into_response();
    }
    not_found("NAME_UNKNOWN")
}

/// Removes the tags this test pulled (each names an image only this test made).
struct PulledImages(Vec<String>);

impl Drop for PulledImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

async fn template(srv: &Server, id: &str) -> Value {
    let (s, t) = srv.call(reqwest::Method::GET, &format!("/api/v1/templates/{id}"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    t
}

/// Polls template `id` until it leaves `pulling`; the template then, and whether a `pulling`
/// answer showed bytes to download.
async fn until_pulled(srv: &Server, id: &str) -> (Value, bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut progress_seen = false;
    loop {
        let t = template(srv, id).await;
        if t["status"] != "pulling" {
            return (t, progress_seen);
        }
        progress_seen |= t["image_pull"]["bytes_total"].as_u64() > Some(0);
        assert!(std::time::Instant::now() < deadline, "template {id} is still pulling: {t}\n{}", srv.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn new_template(id: &str, image: &str) -> Value {
    json!({"id": id, "name": id, "image_url": image, "runtime_type": "python3.11"})
}

async fn create_template(srv: &Server, id: &str, image: &str) -> (StatusCode, Value) {
    srv.call(reqwest::Method::POST, "/api/v1/templates", &srv.key, Some(new_template(id, image))).await
}

async fn session_refused(srv: &Server, template: &str) -> (StatusCode, String, String) {
    let (s, b) = srv
        .call(reqwest::Method::POST, "/api/v1/sessions", &srv.key, Some(json!({"template_id": template})))
        .await;
    (
        s,
        b["code"].as_str().unwrap_or_default().to_owned(),
        b["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_missing_image_is_pulled_with_progress_and_sessions_wait_for_it() {
    let registry = Registry::start(true, &["a", "b"]).await;
    let _cleanup = PulledImages(vec![registry.image("a"), registry.image("b")]);
    let mut srv = Server::start(&[]).await;

    // An invalid reference is refused before anything is stored or pulled.
    let (s, body) = create_template(&srv, "bad-ref", "127.0.0.1:5000/UPPER/x:1").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "image_url", "{body}");

    // Created while the registry holds its blobs back: 202, pulling.
    let (s, t) = create_template(&srv, "pulled", &registry.image("a")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    assert!(t["image_pull"]["started_at"].is_string(), "{t}");
    eventually(Duration::from_secs(60), "Docker asks for a blob", || async {
        (registry.blob_requests.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert_eq!(template(&srv, "pulled").await["status"], "pulling");
    let (s, code, message) = session_refused(&srv, "pulled").await;
    assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "template_not_ready"), "{message}");

    // Let it through: the template becomes ready, with what was pulled.
    registry.open();
    let (done, progress_seen) = until_pulled(&srv, "pulled").await;
    assert_eq!(done["status"], "ready", "{done}\n{}", srv.log());
    let pull = &done["image_pull"];
    let total = pull["bytes_total"].as_u64().unwrap();
    assert!(total >= 8 << 20, "the bytes of the layer the host lacked are recorded: {done}");
    assert_eq!(pull["bytes_done"].as_u64(), Some(total), "{done}");
    assert!(pull["layers_total"].as_u64() > Some(0), "{done}");
    assert_eq!(pull["layers_done"], pull["layers_total"], "{done}");
    assert!(pull["finished_at"].is_string() && pull["error"].is_null(), "{done}");
    println!("progress seen while pulling: {progress_seen}; {pull}");

    // A session of the pulled template runs code.
    let session = srv.create_session(&srv.key.clone(), "pulled").await;
    let r = srv.python(&session, "print(6 * 7)").await;
    assert_eq!(r["stdout"], "42\n", "{r}");
    let (s, _) =
        srv.call(reqwest::Method::DELETE, &format!("/api/v1/sessions/{session}"), &srv.key, None).await;
    assert!(s.is_success(), "{s}");

    // An image the registry does not have: failed, with a code; sessions are told why.
    let (s, t) = create_template(&srv, "ghost", &registry.image("nope")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    let (failed, _) = until_pulled(&srv, "ghost").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["image_pull"]["error"]["code"], "image_not_found", "{failed}");
    assert!(failed["image_pull"]["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{failed}");
    let (s, code, message) = session_refused(&srv, "ghost").await;
    assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "template_pull_failed"), "{message}");
    assert!(message.contains("image_not_found"), "{message}");

    // A restart in the middle of a pull: the pull starts again and ends; nothing stays pulling.
    registry.close();
    let before = registry.blob_requests.load(Ordering::SeqCst);
    let (s, t) = create_template(&srv, "restarted", &registry.image("b")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    eventually(Duration::from_secs(60), "Docker asks for a blob of the second image", || async {
        (registry.blob_requests.load(Ordering::SeqCst) > before).then_some(())
    })
    .await;
    srv.kill(libc::SIGKILL);
    registry.open();
    srv.spawn().await;
    let (after, _) = until_pulled(&srv, "restarted").await;
    assert_eq!(after["status"], "ready", "{after}\n{}", srv.log());
    assert!(srv.log().contains("pulling the image again after a restart"), "{}", srv.log());
    let listed = srv.call(reqwest::Method::GET, "/api/v1/templates", &srv.key, None).await.1;
    let statuses: HashMap<&str, &str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        (statuses["pulled"], statuses["ghost"], statuses["restarted"], statuses["python-basic"]),
        ("ready", "failed", "ready", "ready")
    );
}

#[tokio::test]
async fn with_pulling_off_a_missing_image_is_refused() {
    let srv = Server::start(&[("SANDBOX_TEMPLATES__PULL_IMAGES", "false")]).await;
    // Port 9 on loopback: nothing is asked of it, pulling being off.
    let (s, body) = create_template(&srv, "absent", "127.0.0.1:9/tpl-e2e/absent:1").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("template_image_missing")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["field"], "image_url", "{body}");
    let (s, _) = srv.call(reqwest::Method::GET, "/api/v1/templates/absent", &srv.key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was stored");
    // An image the host has is ready at once: 201.
    let (s, t) = create_template(&srv, "present", &source_image()).await;
    assert_eq!(
        (s, t["status"].as_str(), &t["image_pull"]),
        (StatusCode::CREATED, Some("ready"), &Value::Null),
        "{t}"
    );
}

#[tokio::test]
async fn a_pull_that_stalls_fails_at_its_timeout() {
    // The registry never sends a blob.
    let registry = Registry::start(false, &["stalled"]).await;
    let _cleanup = PulledImages(vec![registry.image("stalled")]);
    let srv = Server::start(&[("SANDBOX_TEMPLATES__PULL_TIMEOUT_SEC", "3")]).await;
    let (s, t) = create_template(&srv, "stalled", &registry.image("stalled")).await;
    assert_eq!((s, t["status"].as_str()), (StatusCode::ACCEPTED, Some("pulling")), "{t}");
    let (failed, _) = until_pulled(&srv, "stalled").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["image_pull"]["error"]["code"], "pull_timed_out", "{failed}");
    assert!(registry.blob_requests.load(Ordering::SeqCst) > 0, "the pull reached the registry");
    let (s, code, _) = session_refused(&srv, "stalled").await;
    assert_eq!((s, code.as_str()), (StatusCode::CONFLICT, "template_pull_failed"));
}
