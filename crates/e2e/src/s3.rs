//! An in-process S3 server (s3s + s3s-fs) on a random loopback port, checking SigV4, for tests
//! of the workspace store and of the server in S3 mode.

use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use sandbox_storage::S3Settings;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

/// The one access key the server accepts.
pub const ACCESS_KEY: &str = "test-access-key";
/// Its secret.
pub const SECRET_KEY: &str = "test-secret-Zq8vK2pW";
/// The bucket every server starts with.
pub const BUCKET: &str = "workspaces";

/// A running S3 server with its own temporary directory.
pub struct TestS3 {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl TestS3 {
    /// Starts a server on `127.0.0.1:0` with bucket [`BUCKET`] and one key pair.
    pub async fn start() -> TestS3 {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let service = service.clone();
                let conn = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                tracked.lock().expect("lock").push(conn.abort_handle());
            }
        });
        TestS3 { addr, dir, accept, connections }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The directory s3s-fs keeps buckets and in-progress uploads in.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Settings that work against this server (default timeouts: completing a large multipart
    /// upload takes s3s-fs, unoptimised in tests, several seconds).
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            bucket: BUCKET.to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
            ..S3Settings::default()
        }
    }

    /// Names of leftover multipart state in the server's directory (parts, upload records).
    pub fn pending_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.root())
            .expect("read root")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.contains(".upload"))
            .collect()
    }

    /// Stops listening and drops every open connection.
    pub async fn stop(&mut self) {
        self.accept.abort();
        let _ = (&mut self.accept).await;
        for conn in self.connections.lock().expect("lock").drain(..) {
            conn.abort();
        }
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut connections) = self.connections.lock() {
            for conn in connections.drain(..) {
                conn.abort();
            }
        }
    }
}
