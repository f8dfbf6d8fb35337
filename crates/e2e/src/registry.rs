//! A container registry (HTTP API v2) on 127.0.0.1 serving images made from a local one, for
//! tests of image pulls: blob downloads can be held back to watch a pull in progress.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;

const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The executor image the served one is made from.
pub fn source_image() -> String {
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
pub struct Registry {
    addr: std::net::SocketAddr,
    repository: String,
    /// Blob requests seen.
    pub blob_requests: Arc<AtomicUsize>,
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
    pub async fn start(from_source: bool, tags: &[&str]) -> Registry {
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
    pub fn image(&self, tag: &str) -> String {
        format!("{}/{}:{tag}", self.addr, self.repository)
    }

    /// Lets blob downloads through.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Holds blob downloads back until [`Registry::open`].
    pub fn close(&self) {
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
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
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
pub struct PulledImages(pub Vec<String>);

impl Drop for PulledImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}
