//! Network egress through the public API, on the real binary and real Docker: the policy a
//! session asks for is checked against the operator's bound, a session with an allow-list gets
//! the egress proxy's socket in the directory its sandbox mounts (connected to here, from the
//! host, as the sandbox's relay does), every attempt is audited, and the socket follows the
//! session's life: gone when it ends, served again after a restart and across a lost sandbox's
//! recreation, made when a pooled sandbox is claimed. All traffic stays on 127.0.0.1 and Unix sockets: names map to loopback (or, to be
//! refused, to private addresses the proxy never connects to) through `egress.hosts`.

mod common;

use common::{Server, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// The body the test web server answers every request with.
const BODY: &str = "hello through the egress proxy\n";

/// A web server on 127.0.0.1 answering every request with [`BODY`] and closing; it records the
/// bytes each connection read and wrote, in the order the connections ended.
struct Web {
    port: u16,
    seen: Arc<Mutex<Vec<(u64, u64)>>>,
}

impl Web {
    async fn start() -> Web {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                        BODY.len()
                    );
                    stream.write_all(answer.as_bytes()).await.unwrap();
                    stream.shutdown().await.unwrap();
                    log.lock().unwrap().push((head.len() as u64, answer.len() as u64));
                });
            }
        });
        Web { port, seen }
    }

    fn seen(&self) -> Vec<(u64, u64)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A settings file: egress permitted on the test names, loopback reachable, names mapped by
/// `hosts` (`web` to the test server, `private` to an address never connected to), and warm pools
/// of `pool_size` for python-basic only.
fn config(dir: &std::path::Path, pool_size: u32) -> String {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"[egress]
permitted = ["*.egress.test:*", "127.0.0.1:*"]
allowed_addresses = ["127.0.0.1"]
hosts = {{ "web.egress.test" = ["127.0.0.1"], "private.egress.test" = ["10.0.0.1"] }}
[pools]
default_size = 0
[pools.sizes]
"python-basic" = {pool_size}
"#
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn start(pool_size: u32) -> Server {
    let dir = tempfile::Builder::new().prefix("sandbox-server-e2e-").tempdir().unwrap();
    let config = config(dir.path(), pool_size);
    Server::start_in(dir, &[("SANDBOX_CONFIG", &config), ("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1")])
        .await
}

/// The allow-list of a session that may reach the test server (and the private name, to be
/// refused by address).
fn allowlist(port: u16) -> Value {
    json!({"mode": "allowlist", "allow": [format!("web.egress.test:{port}"), format!("private.egress.test:{port}")]})
}

/// The test web server, a server, and a session whose allow-list names the web server.
async fn allowlisted() -> (Web, Server, String) {
    let web = Web::start().await;
    let srv = start(0).await;
    let network = allowlist(web.port);
    let id =
        srv.create_session_with(&srv.key, json!({"template_id": "python-basic", "network": network})).await;
    (web, srv, id)
}

/// Where the proxy's socket of session `id` is, on the host.
fn socket_of(srv: &Server, id: &str) -> PathBuf {
    srv.dir.path().join("sessions").join(id).join("egress").join("proxy.sock")
}

/// Reads an HTTP head (up to the blank line) from `stream`; its status and the head's text.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the proxy closed mid-head: {head:?}");
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// `CONNECT authority` through the socket, naming an execution as the relay does: the status,
/// and for a tunnel, what a GET through it answered; the request sent through the tunnel.
async fn connect(socket: &PathBuf, authority: &str) -> (u16, String, String) {
    connect_over(UnixStream::connect(socket).await.unwrap(), authority, "").await
}

/// [`connect`] on `stream`, with `headers` (whole lines) in the request.
async fn connect_over(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    authority: &str,
    headers: &str,
) -> (u16, String, String) {
    let ask = format!(
        "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{headers}X-Sandbox-Execution: exec_e2e\r\n\r\n"
    );
    stream.write_all(ask.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut stream).await;
    if status != 200 {
        return (status, head, String::new());
    }
    let request = format!("GET /tunnel HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    stream.shutdown().await.unwrap();
    (status, answer, request)
}

/// A plain `GET http://authority/` through the socket: the whole answer.
async fn get(socket: &PathBuf, authority: &str) -> String {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    let ask =
        format!("GET http://{authority}/plain HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(ask.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// The session's audit once it holds `n` attempts (newest first).
async fn audit(srv: &Server, id: &str, n: u64) -> Vec<Value> {
    let path = format!("/api/v1/sessions/{id}/network?limit=100");
    eventually(Duration::from_secs(20), &format!("{n} audited attempts"), || async {
        let (s, page) = srv.call(Method::GET, &path, &srv.key, None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        (page["total"].as_u64() == Some(n)).then(|| page["items"].as_array().unwrap().clone())
    })
    .await
}

/// A session's proxy answers a CONNECT to the test server (the socket is served).
async fn reaches(socket: &PathBuf, port: u16) -> bool {
    if !socket.exists() {
        return false;
    }
    let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(socket)).await else {
        return false;
    };
    let (status, answer, _) = connect(socket, &format!("web.egress.test:{port}")).await;
    status == 200 && answer.ends_with(BODY)
}

#[tokio::test]
async fn policies_the_server_does_not_permit_are_refused_with_their_codes() {
    let srv = start(0).await;
    for (network, code) in [
        (json!({"mode": "allowlist", "allow": ["web.egress.test"]}), "invalid_egress_pattern"),
        (json!({"mode": "allowlist", "allow": ["a.*.test:80"]}), "invalid_egress_pattern"),
        (json!({"mode": "none", "allow": ["web.egress.test:80"]}), "invalid_egress_policy"),
        (json!({"mode": "allowlist", "allow": vec!["web.egress.test:80"; 65]}), "invalid_egress_policy"),
        (json!({"mode": "allowlist", "allow": ["pypi.org:443"]}), "egress_not_permitted"),
        (json!({"mode": "allowlist", "allow": ["egress.test:80"]}), "egress_not_permitted"),
    ] {
        let body = json!({"template_id": "python-basic", "network": network});
        let (s, b) = srv.call(Method::POST, "/api/v1/sessions", &srv.key, Some(body)).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{network}: {b}");
        assert_eq!(b["errors"][0]["field"], "network", "{b}");
    }
    let (_, list) = srv.call(Method::GET, "/api/v1/sessions", &srv.key, None).await;
    assert_eq!(list["total"], 0, "a refused create makes nothing");

    // E2B's create: an `allowOut` entry takes the ports the operator permits it on; one permitted
    // on none is refused.
    let e2b = |srv: &Server, body: Value| {
        srv.http.post(srv.url("/sandboxes")).header("X-API-KEY", srv.key.clone()).json(&body).send()
    };
    let refused =
        e2b(&srv, json!({"templateID": "base", "network": {"allowOut": ["pypi.org"]}})).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error_code"], "egress_not_permitted", "{body}");
    let created =
        e2b(&srv, json!({"templateID": "base", "network": {"allowOut": ["web.egress.test"]}})).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let sandbox: Value = created.json().await.unwrap();
    let id = format!("sess_{}", sandbox["sandboxID"].as_str().unwrap());
    let (_, shown) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    assert_eq!(shown["network"], json!({"mode": "allowlist", "allow": ["web.egress.test:*"]}));

    // A server that permits nothing refuses any allow-list, even an empty one, but not E2B's
    // default of internet access: that is no network there.
    let off = Server::start(&[]).await;
    let body = json!({"template_id": "python-basic", "network": {"mode": "allowlist", "allow": []}});
    let (s, b) = off.call(Method::POST, "/api/v1/sessions", &off.key, Some(body)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("egress_not_permitted")),
        "{b}"
    );
    let created = e2b(&off, json!({"templateID": "base", "allow_internet_access": true})).await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let sandbox: Value = created.json().await.unwrap();
    let id = format!("sess_{}", sandbox["sandboxID"].as_str().unwrap());
    let (_, shown) = off.call(Method::GET, &format!("/api/v1/sessions/{id}"), &off.key, None).await;
    assert_eq!(shown["network"], json!({"mode": "none", "allow": []}));
}

#[tokio::test]
async fn a_session_reaches_its_allow_list_through_its_socket_and_every_attempt_is_audited() {
    let (web, srv, id) = allowlisted().await;
    let port = web.port;
    let (_, shown) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    assert_eq!(shown["network"], allowlist(port), "the policy is stored and shown");

    // The socket: in a root-owned directory only the server writes, open to the sandbox's uid.
    let socket = socket_of(&srv, &id);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&socket), 0o666);
    assert_eq!(mode(socket.parent().unwrap()), 0o755);
    let mounts = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{json .HostConfig.Binds}}", &format!("sandbox-{id}")])
        .output()
        .unwrap();
    let binds = String::from_utf8(mounts.stdout).unwrap();
    assert!(
        binds.contains(&format!("{}:/run/sandbox-egress:ro", socket.parent().unwrap().display())),
        "{binds}"
    );

    // A tunnel and a plain request reach the test server by name.
    let target = format!("web.egress.test:{port}");
    let (status, answer, sent) = connect(&socket, &target).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.ends_with(BODY), "{answer}");
    audit(&srv, &id, 1).await;
    let plain = get(&socket, &target).await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(plain.ends_with(BODY), "{plain}");
    audit(&srv, &id, 2).await;
    // Another name, and a name that resolves to a private address, are refused.
    let (status, head, _) = connect(&socket, &format!("other.egress.test:{port}")).await;
    assert_eq!(status, 403, "{head}");
    audit(&srv, &id, 3).await;
    let (status, head, _) = connect(&socket, &format!("private.egress.test:{port}")).await;
    assert_eq!(status, 403, "{head}");

    let items = audit(&srv, &id, 4).await;
    let seen = web.seen();
    assert_eq!(seen.len(), 2, "the refused attempts connected nowhere: {seen:?}");
    let summary: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|a| {
            (a["host"].as_str().unwrap(), a["decision"].as_str().unwrap(), a["reason"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("private.egress.test", "denied_address", "private"),
            ("other.egress.test", "denied_policy", "not_in_allow_list"),
            ("web.egress.test", "allowed", "allowed"),
            ("web.egress.test", "allowed", "allowed"),
        ],
        "newest first: {items:?}"
    );
    let (tunnel, forwarded) = (&items[3], &items[2]);
    assert_eq!((tunnel["kind"].as_str(), forwarded["kind"].as_str()), (Some("connect"), Some("http")));
    assert_eq!(tunnel["execution_id"], "exec_e2e");
    assert_eq!(tunnel["port"], port);
    assert_eq!(tunnel["address"], "127.0.0.1");
    // A tunnel's bytes are its payload exactly; a forwarded request's, what the destination
    // read and wrote.
    assert_eq!(
        (tunnel["bytes_up"].as_u64(), tunnel["bytes_down"].as_u64()),
        (Some(sent.len() as u64), Some(seen[0].1))
    );
    assert_eq!(seen[0].0, sent.len() as u64);
    assert_eq!(
        (forwarded["bytes_up"].as_u64(), forwarded["bytes_down"].as_u64()),
        (Some(seen[1].0), Some(seen[1].1))
    );
    assert_eq!(items[0]["address"], "10.0.0.1");
    assert_eq!((items[0]["bytes_up"].as_u64(), items[1]["address"].as_str()), (Some(0), None));
    // Paged.
    let (_, page) = srv
        .call(Method::GET, &format!("/api/v1/sessions/{id}/network?limit=1&offset=1"), &srv.key, None)
        .await;
    assert_eq!((page["total"].as_u64(), page["has_more"].as_bool()), (Some(4), Some(true)));
    assert_eq!(page["items"][0]["host"], "other.egress.test");
    let metrics =
        srv.http.get(srv.url("/metrics")).bearer_auth(&srv.key).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"sandbox_egress_attempts_total{decision="allowed"} 2"#,
        r#"sandbox_egress_attempts_total{decision="denied_policy"} 1"#,
        r#"sandbox_egress_attempts_total{decision="denied_address"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    let down = format!(r#"sandbox_egress_bytes_total{{direction="down"}} {}"#, seen[0].1 + seen[1].1);
    assert!(metrics.contains(&down), "{down}\n{metrics}");

    // A session without an allow-list has an empty egress directory.
    let plain_session = srv.create_session(&srv.key, "python-basic").await;
    let (_, shown) =
        srv.call(Method::GET, &format!("/api/v1/sessions/{plain_session}"), &srv.key, None).await;
    assert_eq!(shown["network"], json!({"mode": "none", "allow": []}));
    let dir = socket_of(&srv, &plain_session).parent().unwrap().to_owned();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no socket for a session with none");

    // Terminated: the socket goes, the audit stays.
    let (s, _) = srv.call(Method::POST, &format!("/api/v1/sessions/{id}/terminate"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!socket.exists(), "the socket is gone with the session");
    assert_eq!(audit(&srv, &id, 4).await.len(), 4);
    // Deleted: the audit goes too.
    let (s, _) = srv.call(Method::DELETE, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}/network"), &srv.key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_claimed_pool_sandbox_gets_its_socket_and_a_restart_serves_it_again() {
    let web = Web::start().await;
    let mut srv = start(1).await;
    eventually(Duration::from_secs(120), "a ready pool sandbox", || async {
        let (_, pools) = srv.call(Method::GET, "/api/v1/pools", &srv.key, None).await;
        let ready = pools["items"].as_array().unwrap().iter().find(|p| p["template_id"] == "python-basic");
        (ready.is_some_and(|p| p["ready"] == 1)).then_some(())
    })
    .await;
    let id = srv
        .create_session_with(&srv.key, json!({"template_id": "python-basic", "network": allowlist(web.port)}))
        .await;
    let (_, pools) = srv.call(Method::GET, "/api/v1/pools", &srv.key, None).await;
    let pool =
        pools["items"].as_array().unwrap().iter().find(|p| p["template_id"] == "python-basic").unwrap();
    assert_eq!(pool["hits"], 1, "the session claimed the pool's sandbox: {pool}");
    let socket = socket_of(&srv, &id);
    assert!(reaches(&socket, web.port).await, "the claimed sandbox's session is served");
    audit(&srv, &id, 1).await;

    // Killed and started again: the socket left behind answers again once recovered.
    srv.kill(libc::SIGKILL);
    assert!(!reaches(&socket, web.port).await, "nobody serves the socket while the server is down");
    srv.spawn().await;
    eventually(Duration::from_secs(30), "the socket served again", || async {
        reaches(&socket, web.port).await.then_some(())
    })
    .await;
    audit(&srv, &id, 2).await;

    // Its sandbox lost and recreated: the socket is the session's, and stays served.
    let (_, before) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    common::lose_sandbox(&id);
    eventually(Duration::from_secs(90), "the sandbox recreated", || async {
        let (_, now) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
        (now["status"] == "running" && now["container_id"] != before["container_id"]).then_some(())
    })
    .await;
    assert!(reaches(&socket, web.port).await, "served across the recreation");
    audit(&srv, &id, 3).await;
}

/// The whole path, as users meet it: code in a session with an allow-list reaches the test
/// server by name through the relay in its sandbox and the server's proxy, is refused what the
/// list does not name, cannot connect directly, and finds each attempt in the session's audit
/// under its execution; a session without a list has no proxy at all.
#[tokio::test]
async fn code_in_a_session_reaches_exactly_its_allow_list() {
    let (web, srv, id) = allowlisted().await;
    let port = web.port;
    let fetch = |host: &str| {
        format!(
            "import urllib.request, urllib.error\ntry:\n    r = urllib.request.urlopen('http://{host}:{port}/x', timeout=20)\n    print(r.status, r.read().decode(), end='')\nexcept urllib.error.HTTPError as e:\n    print('refused', e.code)\n"
        )
    };
    let r = srv.python(&id, &fetch("web.egress.test")).await;
    assert_eq!(r["stdout"], format!("200 {BODY}"), "{r}");
    let allowed_execution =
        r["execution_id"].as_str().unwrap_or_else(|| r["id"].as_str().unwrap()).to_owned();
    let r = srv.python(&id, &fetch("other.egress.test")).await;
    assert_eq!(r["stdout"], "refused 403\n", "not on the list: {r}");
    let r = srv.python(&id, &fetch("private.egress.test")).await;
    assert_eq!(r["stdout"], "refused 403\n", "a private address: {r}");
    // No way around the proxy: the test server's port is not reachable directly.
    let direct = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n    print('reached')\nexcept OSError:\n    print('blocked')\n"
    );
    assert_eq!(srv.python(&id, &direct).await["stdout"], "blocked\n");

    let attempts = audit(&srv, &id, 3).await;
    let decisions: Vec<(&str, &str)> =
        attempts.iter().map(|a| (a["host"].as_str().unwrap(), a["decision"].as_str().unwrap())).collect();
    assert_eq!(
        decisions,
        [
            ("private.egress.test", "denied_address"),
            ("other.egress.test", "denied_policy"),
            ("web.egress.test", "allowed")
        ],
        "{attempts:?}"
    );
    assert_eq!(attempts[2]["execution_id"], allowed_execution.as_str(), "{attempts:?}");
    assert_eq!(attempts[2]["bytes_down"], web.seen()[0].1, "{attempts:?}");

    // Without a list: no proxy variables, nothing listening for them.
    let none = srv.create_session(&srv.key, "python-basic").await;
    let r = srv.python(&none, "import os\nprint(os.environ.get('HTTP_PROXY'))").await;
    assert_eq!(r["stdout"], "None\n", "{r}");
    assert_eq!(srv.python(&none, &direct).await["stdout"], "blocked\n");
}

/// The Kubernetes proxy (`sandbox-server egress-proxy`), run here as its own process beside a
/// server on Docker and sharing its database: a connection presenting the credential of a
/// session's sandbox (its container id, as a pod's name on Kubernetes) is that session's,
/// held to its allow-list and audited under it; anything else is refused, and a session that
/// ended is not served any more and its open tunnel closes.
#[tokio::test]
async fn the_shared_proxy_serves_a_sandbox_as_the_session_holding_it() {
    let (web, srv, id) = allowlisted().await;
    let key_file = srv.dir.path().join("egress-key");
    std::fs::write(&key_file, "0123456789abcdef".repeat(3)).unwrap();
    let key = sandbox_egress::EgressKey::from_file(&key_file).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(srv.dir.path().join("egress-proxy.log")).unwrap();
    let mut proxy = std::process::Command::new(env!("CARGO_BIN_EXE_sandbox-server"))
        .args(["egress-proxy", "--listen", &format!("127.0.0.1:{port}"), "--key-file"])
        .arg(&key_file)
        .env("SANDBOX_CONFIG", srv.dir.path().join("config.toml"))
        .env("SANDBOX_DATA_DIR", srv.dir.path())
        .env("SANDBOX_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "the egress proxy listening", || async {
        TcpStream::connect(&address).await.ok().map(drop)
    })
    .await;
    let inspected = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.Id}}", &format!("sandbox-{id}")])
        .output()
        .unwrap();
    let container = String::from_utf8(inspected.stdout).unwrap().trim().to_owned();
    assert_eq!(container.len(), 64, "the sandbox's container id");
    let credential = |sandbox: &str| format!("Proxy-Authorization: Bearer {}\r\n", key.credential(sandbox));
    let through = |authority: String, headers: String| {
        let address = address.clone();
        async move { connect_over(TcpStream::connect(&address).await.unwrap(), &authority, &headers).await }
    };

    // The session's sandbox: its list, its audit, its execution id.
    let web_at = format!("web.egress.test:{}", web.port);
    let (status, answer, _) = through(web_at.clone(), credential(&container)).await;
    assert_eq!(
        status,
        200,
        "{answer}\n{}",
        std::fs::read_to_string(srv.dir.path().join("egress-proxy.log")).unwrap()
    );
    assert!(answer.ends_with(BODY), "{answer}");
    let (status, _, _) = through("other.egress.test:80".into(), credential(&container)).await;
    assert_eq!(status, 403, "a name not on the session's list");
    let items = audit(&srv, &id, 2).await;
    let by = |decision: &str| items.iter().find(|i| i["decision"] == decision).unwrap().clone();
    assert_eq!(by("denied_policy")["host"], "other.egress.test");
    let allowed = by("allowed");
    assert_eq!(allowed["host"], "web.egress.test");
    assert_eq!(allowed["execution_id"], "exec_e2e");
    assert_eq!(allowed["bytes_down"].as_u64(), web.seen().first().map(|(_, down)| *down));

    // No credential, another key's, a sandbox nobody holds: refused, nothing audited.
    let (status, _, _) = through(web_at.clone(), String::new()).await;
    assert_eq!(status, 407);
    let forged = sandbox_egress::EgressKey::new(&[7; 32]).unwrap().credential(&container);
    let (status, _, _) = through(web_at.clone(), format!("Proxy-Authorization: Bearer {forged}\r\n")).await;
    assert_eq!(status, 407);
    let (status, _, _) = through(web_at.clone(), credential("sbx-nobody")).await;
    assert_eq!(status, 403);
    assert_eq!(audit(&srv, &id, 2).await.len(), 2);

    // Once the session ends, its open tunnel closes and its sandbox's credential reaches nothing.
    let mut open = TcpStream::connect(&address).await.unwrap();
    let ask = format!("CONNECT {web_at} HTTP/1.1\r\nHost: {web_at}\r\n{}\r\n", credential(&container));
    open.write_all(ask.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut open).await.0, 200);
    let (s, b) = srv.call(Method::POST, &format!("/api/v1/sessions/{id}/terminate"), &srv.key, None).await;
    assert!(s.is_success(), "{b}");
    eventually(Duration::from_secs(20), "the ended session refused", || {
        let (web_at, headers) = (web_at.clone(), credential(&container));
        let through = &through;
        async move { (through(web_at, headers).await.0 == 403).then_some(()) }
    })
    .await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), open.read_to_end(&mut rest))
        .await
        .expect("the ended session's tunnel is closed")
        .unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
}
