//! The connector behind the client: a Unix socket or a TCP address, whatever the URI says.

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Where an executor listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path (reachable from the host through the sandbox's socket directory), and
    /// the uid its listener must run as, if the caller knows it: the socket's directory is the
    /// sandbox's to write, so whatever is there is checked before it is spoken to.
    Unix(PathBuf, Option<u32>),
    /// A TCP address (a pod IP and port).
    Tcp(SocketAddr),
}

#[derive(Clone)]
pub(crate) struct Connector(Arc<Endpoint>);

impl Connector {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Connector(Arc::new(endpoint))
    }
}

pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl tower::Service<http::Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let endpoint = self.0.clone();
        Box::pin(async move {
            Ok(TokioIo::new(match &*endpoint {
                Endpoint::Unix(p, peer_uid) => {
                    let s = connect_unix(p).await?;
                    if let Some(want) = peer_uid {
                        let got = s.peer_cred()?.uid();
                        if got != *want {
                            return Err(io::Error::new(
                                io::ErrorKind::PermissionDenied,
                                format!(
                                    "{} is served by uid {got}, not by the sandbox's uid {want}",
                                    p.display()
                                ),
                            ));
                        }
                    }
                    Stream::Unix(s)
                }
                Endpoint::Tcp(a) => {
                    let s = TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    Stream::Tcp(s)
                }
            }))
        })
    }
}

/// Longest socket path `connect(2)` takes (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Connects to a Unix socket at any path length: a path too long for `sun_path` is reached
/// through `/proc/self/fd/N/<name>`, where `N` is its directory held open for the call.
async fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return UnixStream::connect(path).await;
    }
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (d, n),
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path has no file name")),
    };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string()).join(name);
    let stream = UnixStream::connect(&short).await;
    drop(dir);
    stream
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reaches_sockets_beyond_the_path_limit() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("executor.sock");
        assert!(path.as_os_str().len() > MAX_SOCKET_PATH);
        // Bind through the same /proc route the client uses (the plain path is too long).
        let held = std::fs::File::open(&deep).unwrap();
        let short = Path::new("/proc/self/fd").join(held.as_raw_fd().to_string()).join("executor.sock");
        let listener = std::os::unix::net::UnixListener::bind(&short).unwrap();
        drop(held);
        assert!(path.exists());
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::UnixListener::from_std(listener).unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        connect_unix(&path).await.expect("connects through /proc/self/fd");
        accept.await.unwrap().unwrap();
        assert!(UnixStream::connect(&path).await.is_err(), "the plain path is indeed too long");
    }

    /// A socket put where the executor's should be, but served by someone else (here: this
    /// test, as root), is refused before anything is sent to it.
    #[tokio::test]
    async fn a_socket_served_by_another_uid_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("executor.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let accept = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut got).await;
            got
        });
        let connector = Connector::new(Endpoint::Unix(path.clone(), Some(me + 1)));
        let err =
            match tower::ServiceExt::oneshot(connector, http::Uri::from_static("http://executor/")).await {
                Ok(_) => panic!("connected to a socket of another uid"),
                Err(e) => e,
            };
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
        assert!(accept.await.unwrap().is_empty(), "nothing was sent");
        // Served by the expected uid, it connects.
        let path = dir.path().join("right.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let ok = Connector::new(Endpoint::Unix(path, Some(me)));
        let (connected, accepted) = tokio::join!(
            tower::ServiceExt::oneshot(ok, http::Uri::from_static("http://executor/")),
            listener.accept()
        );
        assert!(connected.is_ok() && accepted.is_ok());
    }
}
