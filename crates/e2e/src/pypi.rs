//! A Python package index on loopback for install tests: wheels built here, in memory, served
//! the way PyPI's simple API serves them (PEP 503), so no test needs the internet.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Index {
    /// Normalized project name → wheel file names.
    projects: BTreeMap<String, Vec<String>>,
    /// Wheel file name → bytes.
    files: BTreeMap<String, Bytes>,
    /// Requests answered.
    requests: u64,
    /// Connections accepted.
    connections: u64,
    /// Wait before each answer.
    delay: Duration,
    /// Where project pages link files: `""` (this index) or another server's `http://host:port`.
    files_base: String,
}

/// A running index.
pub struct TestIndex {
    addr: SocketAddr,
    index: Arc<Mutex<Index>>,
    accept: JoinHandle<()>,
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// A pure-Python wheel of `name` at `version` whose one module (the name with `-` as `_`) is
/// `source`; `requires` become its `Requires-Dist` lines.
pub fn wheel(name: &str, version: &str, requires: &[&str], source: &str) -> (String, Vec<u8>) {
    let dist = name.replace('-', "_");
    let module = dist.to_ascii_lowercase();
    let info = format!("{dist}-{version}.dist-info");
    let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    for r in requires {
        metadata.push_str(&format!("Requires-Dist: {r}\n"));
    }
    let files = [
        (format!("{module}/__init__.py"), source.to_owned()),
        (format!("{info}/METADATA"), metadata),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: sandbox-e2e\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
        ),
    ];
    let mut record: String = files.iter().map(|(path, _)| format!("{path},,\n")).collect();
    record.push_str(&format!("{info}/RECORD,,\n"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, content) in files.iter().chain(std::iter::once(&(format!("{info}/RECORD"), record))) {
        zip.start_file(path.as_str(), options).expect("zip entry");
        zip.write_all(content.as_bytes()).expect("zip write");
    }
    let bytes = zip.finish().expect("zip finish").into_inner();
    (format!("{dist}-{version}-py3-none-any.whl"), bytes)
}

impl TestIndex {
    /// Starts an empty index on `127.0.0.1:0`.
    pub async fn start() -> TestIndex {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let index: Arc<Mutex<Index>> = Arc::default();
        let shared = index.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                shared.lock().expect("lock").connections += 1;
                let index = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(index.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        TestIndex { addr, index, accept }
    }

    /// The index URL pip is given: `http://127.0.0.1:PORT/simple/`.
    pub fn url(&self) -> String {
        format!("http://{}/simple/", self.addr)
    }

    /// Where it listens: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes project pages link their files on `other` (which must have them published too),
    /// as PyPI links files on another host.
    pub fn link_files_on(&self, other: &TestIndex) {
        self.index.lock().expect("lock").files_base = format!("http://{}", other.addr);
    }

    /// Adds a package version (see [`wheel`]).
    pub fn publish(&self, name: &str, version: &str, requires: &[&str], source: &str) {
        let (file, bytes) = wheel(name, version, requires, source);
        let mut index = self.index.lock().expect("lock");
        index.projects.entry(normalize(name)).or_default().push(file.clone());
        index.files.insert(file, bytes.into());
    }

    /// Adds a source distribution (a `.zip` sdist) of `name` at `version` holding `files`
    /// (paths inside its top directory `name-version/`).
    pub fn publish_sdist(&self, name: &str, version: &str, files: &[(&str, &str)]) {
        let top = format!("{name}-{version}");
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let pkg_info = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        for (path, content) in files.iter().copied().chain(std::iter::once(("PKG-INFO", pkg_info.as_str()))) {
            zip.start_file(format!("{top}/{path}"), options).expect("zip entry");
            zip.write_all(content.as_bytes()).expect("zip write");
        }
        let bytes = zip.finish().expect("zip finish").into_inner();
        let file = format!("{top}.zip");
        let mut index = self.index.lock().expect("lock");
        index.projects.entry(normalize(name)).or_default().push(file.clone());
        index.files.insert(file, bytes.into());
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> u64 {
        self.index.lock().expect("lock").connections
    }

    /// How many requests it has answered.
    pub fn requests(&self) -> u64 {
        self.index.lock().expect("lock").requests
    }

    /// Makes every answer wait `delay` first (an install that takes a while).
    pub fn set_delay(&self, delay: Duration) {
        self.index.lock().expect("lock").delay = delay;
    }
}

impl Drop for TestIndex {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn answer(
    index: Arc<Mutex<Index>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let delay = {
        let mut index = index.lock().expect("lock");
        index.requests += 1;
        index.delay
    };
    tokio::time::sleep(delay).await;
    let path = req.uri().path().to_owned();
    let index = index.lock().expect("lock");
    let found = if let Some(project) = path.strip_prefix("/simple/") {
        index.projects.get(&normalize(project.trim_end_matches('/'))).map(|files| {
            let base = &index.files_base;
            let links: String =
                files.iter().map(|f| format!("<a href=\"{base}/files/{f}\">{f}</a>\n")).collect();
            ("text/html", Bytes::from(format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n")))
        })
    } else if let Some(file) = path.strip_prefix("/files/") {
        index.files.get(file).map(|b| ("application/octet-stream", b.clone()))
    } else {
        None
    };
    Ok(match found {
        Some((kind, body)) => {
            Response::builder().header("content-type", kind).body(Full::new(body)).expect("response")
        }
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")))
            .expect("response"),
    })
}
