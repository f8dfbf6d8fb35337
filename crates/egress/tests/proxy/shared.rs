//! One listener for many sandboxes (Kubernetes): identity is the credential a connection's
//! first request presents, mapped to the session that holds the sandbox when it arrives.

use crate::support::*;
use sandbox_egress::{Decision, EgressKey, Grant, LookupError, PolicyDenial, SessionLookup, SessionPolicy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sandboxes and the sessions holding them, changed as a test goes; a sandbox called `broken`
/// makes the lookup fail.
#[derive(Default)]
struct Holders(Mutex<HashMap<String, Grant>>);

impl Holders {
    fn hold(&self, sandbox: &str, session: &str, policy: SessionPolicy) {
        let grant = Grant { session_id: session.to_owned(), policy };
        self.0.lock().unwrap().insert(sandbox.to_owned(), grant);
    }

    fn release(&self, sandbox: &str) {
        self.0.lock().unwrap().remove(sandbox);
    }
}

#[async_trait::async_trait]
impl SessionLookup for Holders {
    async fn session_of(&self, sandbox: &str) -> Result<Option<Grant>, LookupError> {
        if sandbox == "broken" {
            return Err(LookupError("the store is down".into()));
        }
        Ok(self.0.lock().unwrap().get(sandbox).cloned())
    }
}

/// The harness's proxy serving `holders` on one TCP listener on 127.0.0.1 under `key`.
async fn serve_shared(
    harness: &Harness,
    key: &EgressKey,
    holders: Arc<Holders>,
) -> (SocketAddr, AbortOnDrop<std::io::Error>) {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(harness.proxy.serve_shared(listener, key.clone(), holders));
    (address, AbortOnDrop(task))
}

fn key() -> EgressKey {
    EgressKey::new(b"a key of thirty-two bytes or more!").unwrap()
}

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

#[tokio::test]
async fn a_credential_is_the_session_that_holds_its_sandbox() {
    let harness = Harness::new(loopback_settings());
    let mut server = TestServer::http().await;
    let target = server.at("web.test");
    let key = key();
    let holders = Arc::new(Holders::default());
    holders.hold("sbx-a", "sess_a", allowlist(std::slice::from_ref(&target)));
    holders.hold("sbx-b", "sess_b", SessionPolicy::none());
    let (proxy, _task) = serve_shared(&harness, &key, holders.clone()).await;

    // A's credential: A's list, A's audit, the execution id kept, the credential not passed on.
    let auth = bearer(&key.credential("sbx-a"));
    let request = format!(
        "GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {auth}\r\n\
         X-Sandbox-Execution: exec_1\r\nConnection: close\r\n\r\n"
    );
    let (head, body) = raw_request(proxy, &request).await;
    assert_eq!((status(&head), body.as_slice()), (200, &b"hello\n"[..]), "{head}");
    let forwarded = server.exchange().await.request.to_ascii_lowercase();
    assert!(!forwarded.contains("proxy-authorization") && !forwarded.contains("bearer"), "{forwarded}");
    let record = harness.record(1).await;
    assert_eq!((record.session_id.as_str(), record.decision), ("sess_a", Decision::Allowed));
    assert_eq!(record.execution_id.as_deref(), Some("exec_1"));
    let tunnel = connect(proxy, &target, &[("Proxy-Authorization", &auth)]).await.tunnel();
    let (head, _) = get_over(tunnel, "web.test", "/").await;
    assert_eq!(status(&head), 200);
    assert_eq!(harness.record(2).await.session_id, "sess_a");

    // B's credential: B's policy (none), audited as B's.
    let b = bearer(&key.credential("sbx-b"));
    let (code, _) = connect(proxy, &target, &[("Proxy-Authorization", &b)]).await.refused();
    assert_eq!(code, 403);
    let record = harness.record(3).await;
    assert_eq!(record.session_id, "sess_b");
    assert_eq!(record.decision, Decision::DeniedPolicy(PolicyDenial::NotInAllowList));

    // No credential, a forged one, another key's, another scheme: 407, nothing audited, nothing
    // connected.
    let other = EgressKey::new(&[9; 32]).unwrap();
    let a_mac = key.credential("sbx-a");
    let forged = format!("sbx-b{}", &a_mac["sbx-a".len()..]);
    let cases = [
        vec![],
        vec![("Proxy-Authorization", bearer(&forged))],
        vec![("Proxy-Authorization", bearer(&other.credential("sbx-a")))],
        vec![("Proxy-Authorization", format!("Basic {a_mac}"))],
        vec![("X-Sandbox-Session", "sess_a".to_owned())],
    ];
    for headers in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = step("the 407", read_head(&mut stream)).await.unwrap();
        assert_eq!(status(&head), 407, "{headers:?}: {head}");
        assert!(head.to_ascii_lowercase().contains("proxy-authenticate: bearer"), "{head}");
        let mut rest = Vec::new();
        step("the close", stream.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(rest, b"egress: no valid credential\n", "the connection is closed after the answer");
    }

    // A sandbox nobody holds, and a lookup that fails.
    let (code, body) = connect(proxy, &target, &[("Proxy-Authorization", &bearer(&key.credential("sbx-c")))])
        .await
        .refused();
    assert_eq!((code, body.as_str()), (403, "egress: the sandbox serves no session\n"));
    let broken = bearer(&key.credential("broken"));
    assert_eq!(connect(proxy, &target, &[("Proxy-Authorization", &broken)]).await.refused().0, 503);
    assert_eq!(harness.audit.records().len(), 3, "refusals without a session are not audited");
    assert!(harness.connector.asked().iter().all(|a| a.ip().is_loopback()));
    assert_eq!(harness.connector.asked().len(), 2, "only A's two attempts connected");
}

#[tokio::test]
async fn a_pooled_sandbox_gets_its_session_when_claimed() {
    let harness = Harness::new(loopback_settings());
    let server = TestServer::http().await;
    let target = server.at("web.test");
    let key = key();
    let holders = Arc::new(Holders::default());
    let (proxy, _task) = serve_shared(&harness, &key, holders.clone()).await;
    let auth = bearer(&key.credential("sbx-warm"));
    assert_eq!(connect(proxy, &target, &[("Proxy-Authorization", &auth)]).await.refused().0, 403);
    holders.hold("sbx-warm", "sess_late", allowlist(std::slice::from_ref(&target)));
    let tunnel = connect(proxy, &target, &[("Proxy-Authorization", &auth)]).await.tunnel();
    let (head, _) = get_over(tunnel, "web.test", "/").await;
    assert_eq!(status(&head), 200);
    assert_eq!(harness.record(1).await.session_id, "sess_late");
}

#[tokio::test]
async fn a_session_s_limits_cover_all_its_connections() {
    let mut settings = loopback_settings();
    settings.max_connections_per_session = 1;
    let harness = Harness::new(settings);
    let server = TestServer::http().await;
    let target = server.at("web.test");
    let key = key();
    let holders = Arc::new(Holders::default());
    holders.hold("sbx-one", "sess_one", allowlist(std::slice::from_ref(&target)));
    holders.hold("sbx-two", "sess_two", allowlist(std::slice::from_ref(&target)));
    let (proxy, _task) = serve_shared(&harness, &key, holders.clone()).await;
    let one = bearer(&key.credential("sbx-one"));

    // One tunnel open: the same session's next connection is over its limit, another
    // session's is not.
    let open = connect(proxy, &target, &[("Proxy-Authorization", &one)]).await.tunnel();
    assert_eq!(connect(proxy, &target, &[("Proxy-Authorization", &one)]).await.refused().0, 429);
    let refused = harness.record(1).await;
    assert_eq!((refused.session_id.as_str(), refused.decision), ("sess_one", Decision::DeniedLimit));
    let two = bearer(&key.credential("sbx-two"));
    let tunnel = connect(proxy, &target, &[("Proxy-Authorization", &two)]).await.tunnel();
    assert_eq!(status(&get_over(tunnel, "web.test", "/").await.0), 200);

    // Once the tunnel closes, the session may connect again.
    let (head, _) = get_over(open, "web.test", "/").await;
    assert_eq!(status(&head), 200);
    let again = step("a slot frees", async {
        loop {
            match connect(proxy, &target, &[("Proxy-Authorization", &one)]).await {
                Connected::Tunnel(stream) => break stream,
                Connected::Refused(..) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(status(&get_over(again, "web.test", "/").await.0), 200);
}

#[tokio::test]
async fn a_session_that_ends_loses_its_open_connections() {
    let harness = Harness::new(loopback_settings());
    let server = TestServer::http().await;
    let target = server.at("web.test");
    let key = key();
    let holders = Arc::new(Holders::default());
    holders.hold("sbx-a", "sess_a", allowlist(std::slice::from_ref(&target)));
    holders.hold("sbx-b", "sess_b", allowlist(std::slice::from_ref(&target)));
    let (proxy, _task) = serve_shared(&harness, &key, holders.clone()).await;
    let (a, b) = (bearer(&key.credential("sbx-a")), bearer(&key.credential("sbx-b")));
    let mut ended = connect(proxy, &target, &[("Proxy-Authorization", &a)]).await.tunnel();
    let mut kept = connect(proxy, &target, &[("Proxy-Authorization", &b)]).await.tunnel();

    // Session a ends (its pod goes): its tunnel closes, b's stays; a's credential is refused.
    holders.release("sbx-a");
    let mut rest = Vec::new();
    step("the ended session's tunnel closes", ended.read_to_end(&mut rest)).await.unwrap();
    let record = harness.record(1).await;
    assert_eq!((record.session_id.as_str(), record.decision), ("sess_a", Decision::Allowed));
    assert_eq!(connect(proxy, &target, &[("Proxy-Authorization", &a)]).await.refused().0, 403);
    kept.write_all(get_request("web.test", "/").as_bytes()).await.unwrap();
    let head = step("the other session's tunnel still works", read_head(&mut kept)).await.unwrap();
    assert_eq!(status(&head), 200);
}
