//! Sessions: identity is the listener a connection arrives on, what a client says is metadata
//! at most, and a session's proxy stops with everything it opened.

use crate::support::*;
use sandbox_egress::{Decision, Listener, PolicyDenial, SessionPolicy};
use std::collections::VecDeque;
use std::io;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UnixListener, UnixStream};

#[tokio::test]
async fn identity_is_the_socket_a_connection_arrives_on() {
    let harness = Harness::new(loopback_settings());
    let server = TestServer::http().await;
    let target = server.at("web.test");
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let policy = allowlist(std::slice::from_ref(&target));
    let _a = AbortOnDrop(tokio::spawn(harness.proxy.serve_session(
        "sess_a",
        policy,
        UnixListener::bind(&path_a).unwrap(),
    )));
    let _b = AbortOnDrop(tokio::spawn(harness.proxy.serve_session(
        "sess_b",
        SessionPolicy::none(),
        UnixListener::bind(&path_b).unwrap(),
    )));

    // Whatever a client of b's socket claims, it is b.
    let claims = [("X-Sandbox-Session", "sess_a"), ("Proxy-Authorization", "Basic c2Vzc19hOg==")];
    let (code, _) =
        connect_over(UnixStream::connect(&path_b).await.unwrap(), &target, &claims).await.refused();
    assert_eq!(code, 403);
    let denied = harness.record(1).await;
    assert_eq!(denied.session_id, "sess_b");
    assert_eq!(denied.decision, Decision::DeniedPolicy(PolicyDenial::NotInAllowList));

    // An execution id is recorded as given, when it looks like one.
    let stream = UnixStream::connect(&path_a).await.unwrap();
    let tunnel = connect_over(stream, &target, &[("X-Sandbox-Execution", "../../etc/passwd")]).await.tunnel();
    let (head, body) = get_over(tunnel, "web.test", "/").await;
    assert_eq!((status(&head), body.as_slice()), (200, &b"hello\n"[..]));
    let allowed = harness.record(2).await;
    assert_eq!((allowed.session_id.as_str(), allowed.decision), ("sess_a", Decision::Allowed));
    assert_eq!(allowed.execution_id, None);
}

#[tokio::test]
async fn stopping_a_session_closes_its_tunnels_and_audits_them() {
    let (harness, server, served) = web().await;
    let target = server.at("web.test");
    let mut tunnel = connect(served.address, &target, &[]).await.tunnel();
    let address = served.address;
    drop(served);
    let mut rest = Vec::new();
    step("the tunnel's end", tunnel.read_to_end(&mut rest)).await.unwrap();
    let record = harness.record(1).await;
    assert_eq!((record.session_id.as_str(), record.decision), ("sess_web", Decision::Allowed));
    assert!(TcpStream::connect(address).await.is_err(), "the listener is closed");
}

/// A listener that answers from a script of errors, then fails for good.
struct Scripted(VecDeque<io::ErrorKind>);

impl Listener for Scripted {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        Err(self.0.pop_front().unwrap_or(io::ErrorKind::InvalidInput).into())
    }
}

#[tokio::test]
async fn transient_accept_errors_pause_and_a_broken_listener_ends_the_session() {
    let harness = Harness::new(settings(&[], &[]));
    let script = [io::ErrorKind::ConnectionAborted, io::ErrorKind::Interrupted, io::ErrorKind::NotConnected];
    let listener = Scripted(script.into());
    let error =
        step("the session's end", harness.proxy.serve_session("sess_l", SessionPolicy::none(), listener))
            .await;
    assert_eq!(error.kind(), io::ErrorKind::NotConnected);
}
