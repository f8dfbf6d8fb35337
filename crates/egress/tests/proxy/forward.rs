//! Plain HTTP forwarding: requests in absolute form are decided on their URI, reach the server
//! in origin form without hop-by-hop, `Proxy-*` or execution headers, and are audited to the
//! byte.

use crate::support::*;
use sandbox_egress::{Decision, Failure, PolicyDenial, RequestKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_request_is_forwarded_in_origin_form_without_proxy_headers() {
    let (harness, mut server, served) = web().await;
    let port = server.port;
    let request = format!(
        "POST http://Web.Test:{port}/bytes/10?q=1 HTTP/1.1\r\nHost: evil.test\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\
         Connection: close, X-Hop\r\nX-Hop: 1\r\nX-Sandbox-Execution: exec_7\r\n\
         Authorization: Bearer kept\r\nContent-Length: 5\r\n\r\nhello"
    );
    let (head, body) = raw_request(served.address, &request).await;
    assert_eq!(status(&head), 200, "{head}");
    assert_eq!(body, b"xxxxxxxxxx");
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("keep-alive: timeout") && !head.contains("proxy-authenticate"), "{head}");

    let exchange = server.exchange().await;
    let seen = exchange.request.to_ascii_lowercase();
    assert!(seen.starts_with("post /bytes/10?q=1 http/1.1\r\n"), "{seen}");
    assert!(seen.contains(&format!("host: web.test:{port}\r\n")), "{seen}");
    assert!(seen.contains("authorization: bearer kept\r\n"), "{seen}");
    assert!(seen.ends_with("\r\n\r\nhello"), "{seen}");
    for gone in ["evil.test", "proxy-", "x-hop", "x-sandbox-execution", "exec_7", "connection: close, x-hop"]
    {
        assert!(!seen.contains(gone), "{gone:?} reached the server: {seen}");
    }

    let record = harness.record(1).await;
    assert_eq!(record.kind, RequestKind::Http);
    assert_eq!(record.execution_id.as_deref(), Some("exec_7"));
    assert_eq!((record.host.as_str(), record.port), ("web.test", Some(port)));
    assert_eq!(record.decision, Decision::Allowed);
    assert_eq!((record.bytes_up, record.bytes_down), (exchange.received, exchange.sent));
    assert_eq!(record.bytes_down, (response_head(10).len() + 10) as u64);
}

#[tokio::test]
async fn each_request_on_a_kept_alive_connection_is_decided_and_audited() {
    let (harness, mut server, served) = web().await;
    let port = server.port;
    let mut client = TcpStream::connect(served.address).await.unwrap();
    // A relay names the execution in the connection's first request only.
    for (path, length, named) in [("/bytes/3", 3, "X-Sandbox-Execution: exec_k\r\n"), ("/bytes/4", 4, "")] {
        let request = format!("GET http://web.test:{port}{path} HTTP/1.1\r\nHost: web.test\r\n{named}\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let head = step("a response", read_head(&mut client)).await.unwrap();
        assert_eq!(status(&head), 200);
        let mut body = vec![0; content_length(&head)];
        client.read_exact(&mut body).await.unwrap();
        assert_eq!(body.len(), length);
        server.exchange().await;
    }
    let request = format!("GET http://web.test:{}/ HTTP/1.1\r\nHost: web.test\r\n\r\n", port + 1);
    client.write_all(request.as_bytes()).await.unwrap();
    let head = step("a refusal", read_head(&mut client)).await.unwrap();
    assert_eq!(status(&head), 403);
    let records = step("three records", harness.audit.wait_for(3)).await;
    let decisions: Vec<Decision> = records.iter().map(|r| r.decision).collect();
    assert_eq!(
        decisions,
        [Decision::Allowed, Decision::Allowed, Decision::DeniedPolicy(PolicyDenial::NotInAllowList)]
    );
    let executions: Vec<Option<&str>> = records.iter().map(|r| r.execution_id.as_deref()).collect();
    assert_eq!(executions, [Some("exec_k"); 3], "every request of the connection is the execution's");
    assert_eq!(harness.connector.asked().len(), 2);
}

#[tokio::test]
async fn refusals_carry_the_reason_and_connect_nowhere() {
    let (harness, server, served) = web().await;
    harness.map("private.test", &["192.168.0.10"]);
    let private = harness.serve("sess_p", allowlist(&["private.test:80".into()])).await;
    for (proxy, target, reason) in [
        (&served, format!("web.test:{}", server.port + 1), "denied_policy: not_in_allow_list"),
        (&served, format!("169.254.169.254:{}", server.port), "denied_policy: not_in_allow_list"),
        (&private, "private.test".into(), "denied_address: private"),
    ] {
        let request = format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        let (head, body) = raw_request(proxy.address, &request).await;
        assert_eq!(status(&head), 403);
        assert_eq!(String::from_utf8(body).unwrap(), format!("egress {reason}\n"));
    }
    assert!(harness.connector.asked().is_empty());
}

#[tokio::test]
async fn only_absolute_http_uris_are_forwarded() {
    let (harness, server, served) = web().await;
    let port = server.port;
    for request in [
        format!("GET /?token=secret HTTP/1.1\r\nHost: web.test:{port}\r\nConnection: close\r\n\r\n"),
        format!(
            "GET https://u:pw@web.test:{port}/?token=secret HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n"
        ),
        "GET http://web.test:0/ HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n".to_owned(),
    ] {
        let (head, body) = raw_request(served.address, &request).await;
        assert_eq!(status(&head), 400, "{request}");
        assert_eq!(body, b"egress error: bad_request\n");
    }
    let records = step("three records", harness.audit.wait_for(3)).await;
    assert!(records.iter().all(|r| r.decision == Decision::Error(Failure::BadRequest)));
    // The record names what authority there was, never credentials, a path or a query.
    let hosts: Vec<&str> = records.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["", &format!("web.test:{port}"), "web.test:0"]);
    assert!(harness.connector.asked().is_empty());
}

#[tokio::test]
async fn a_destination_that_does_not_answer_http_is_a_bad_gateway() {
    const GARBAGE: &[u8] = b"SSH-2.0-not-http\r\n\r\n";
    let harness = Harness::new(loopback_settings());
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = AbortOnDrop(tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_head(&mut stream).await.unwrap();
        stream.write_all(GARBAGE).await.unwrap();
    }));
    let served = harness.serve("sess_g", allowlist(&[format!("web.test:{port}")])).await;
    let request =
        format!("GET http://web.test:{port}/ HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n");
    let (head, body) = raw_request(served.address, &request).await;
    assert_eq!(status(&head), 502);
    assert_eq!(body, b"egress: the destination did not answer\n");
    let record = harness.record(1).await;
    assert_eq!(record.decision, Decision::Allowed, "the connection was made");
    assert_eq!(record.bytes_down, GARBAGE.len() as u64);
}
