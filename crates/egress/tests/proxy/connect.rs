//! CONNECT tunnels: what is reached, what is refused before any connection, what the audit
//! says.

use crate::support::*;
use sandbox_egress::{
    AddressClass, Decision, DecisionKind, Failure, PolicyDenial, RequestKind, SessionPolicy,
};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn a_name_on_the_allow_list_is_reached_and_audited_to_the_byte() {
    let (harness, mut server, served) = web().await;
    let target = server.at("web.test");
    let tunnel = connect(served.address, &target, &[("X-Sandbox-Execution", "exec_1")]).await.tunnel();
    let (head, body) = get_over(tunnel, "web.test", "/bytes/1000").await;
    assert_eq!(status(&head), 200);
    assert_eq!(body.len(), 1000);

    let exchange = server.exchange().await;
    let record = harness.record(1).await;
    assert_eq!(record.session_id, "sess_web");
    assert_eq!(record.execution_id.as_deref(), Some("exec_1"));
    assert_eq!(record.kind, RequestKind::Connect);
    assert_eq!((record.host.as_str(), record.port), ("web.test", Some(server.port)));
    assert_eq!(record.address, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(record.decision, Decision::Allowed);
    // Exactly the request sent and the response received, as counted by the server too.
    let request = get_request("web.test", "/bytes/1000");
    assert_eq!(record.bytes_up, request.len() as u64);
    assert_eq!(record.bytes_down, (response_head(1000).len() + 1000) as u64);
    assert_eq!((record.bytes_up, record.bytes_down), (exchange.received, exchange.sent));
    assert!(record.duration < STEP);

    assert_eq!(harness.connector.asked(), [format!("127.0.0.1:{}", server.port).parse().unwrap()]);
    assert_eq!(harness.counters.decided(DecisionKind::Allowed), 1);
    assert_eq!(harness.counters.bytes(), record.bytes_up + record.bytes_down);
}

#[tokio::test]
async fn tls_passes_through_the_tunnel_untouched() {
    let harness = Harness::new(loopback_settings());
    let (mut server, cert) = TestServer::tls("tls.test").await;
    let target = server.at("tls.test");
    let served = harness.serve("sess_tls", allowlist(std::slice::from_ref(&target))).await;

    let tunnel = connect(served.address, &target, &[]).await.tunnel();
    let tls =
        step("TLS handshake", tls_client(&cert).connect(server_name("tls.test"), tunnel)).await.unwrap();
    let (head, body) = get_over(tls, "tls.test", "/").await;
    assert_eq!(status(&head), 200);
    assert_eq!(body, b"hello\n");

    let exchange = server.exchange().await;
    assert!(exchange.request.starts_with("GET / HTTP/1.1\r\n"), "{}", exchange.request);
    let record = harness.record(1).await;
    assert_eq!(record.decision, Decision::Allowed);
    assert_eq!((record.bytes_up, record.bytes_down), (exchange.received, exchange.sent));
}

/// Asks for `target` and expects `status` and `decision`, with no connection attempted.
async fn refused_before_connecting(
    harness: &Harness,
    served: &Served,
    target: &str,
    expected_status: u16,
    decision: Decision,
) -> sandbox_egress::AuditRecord {
    let asked = harness.connector.asked().len();
    let count = harness.audit.records().len() + 1;
    let (code, body) = connect(served.address, target, &[]).await.refused();
    assert_eq!(code, expected_status, "{target}: {body}");
    assert_eq!(body, format!("egress {decision}\n"));
    let record = harness.record(count).await;
    assert_eq!(record.decision, decision, "{target}");
    assert_eq!((record.bytes_up, record.bytes_down), (0, 0));
    assert_eq!(harness.connector.asked().len(), asked, "{target}: no connection may be attempted");
    record
}

#[tokio::test]
async fn a_session_without_egress_reaches_nothing() {
    let (harness, server, _) = web().await;
    let none = harness.serve("sess_none", SessionPolicy::none()).await;
    let denied = Decision::DeniedPolicy(PolicyDenial::NotInAllowList);
    let record = refused_before_connecting(&harness, &none, &server.at("web.test"), 403, denied).await;
    assert_eq!(record.session_id, "sess_none");
    assert_eq!(record.address, None, "nothing was even resolved");
}

#[tokio::test]
async fn another_port_of_an_allowed_name_is_refused() {
    let (harness, server, served) = web().await;
    let denied = Decision::DeniedPolicy(PolicyDenial::NotInAllowList);
    refused_before_connecting(&harness, &served, &format!("web.test:{}", server.port + 1), 403, denied).await;
    refused_before_connecting(&harness, &served, &format!("other.test:{}", server.port), 403, denied).await;
    refused_before_connecting(&harness, &served, &format!("127.0.0.1:{}", server.port), 403, denied).await;
}

#[tokio::test]
async fn a_name_that_re_resolves_to_a_forbidden_address_is_refused() {
    let (harness, server, served) = web().await;
    let target = server.at("web.test");
    drop(connect(served.address, &target, &[]).await.tunnel());
    assert_eq!(harness.record(1).await.decision, Decision::Allowed);
    for (address, class) in [
        ("10.1.2.3", AddressClass::Private),
        ("192.168.1.10", AddressClass::Private),
        ("169.254.169.254", AddressClass::LinkLocal),
        ("100.64.0.1", AddressClass::SharedAddressSpace),
        ("::ffff:10.0.0.1", AddressClass::Private),
        ("fd00::1", AddressClass::Private),
        ("127.0.0.2", AddressClass::Loopback),
        ("::1", AddressClass::Loopback),
    ] {
        harness.map("web.test", &[address]);
        let record =
            refused_before_connecting(&harness, &served, &target, 403, Decision::DeniedAddress(class)).await;
        assert_eq!(record.address, Some(address.parse::<IpAddr>().unwrap().to_canonical()));
    }
    assert_eq!(harness.connector.asked().len(), 1, "only the first, loopback, connection");
}

#[tokio::test]
async fn loopback_is_forbidden_unless_the_operator_lists_it() {
    let harness = Harness::new(settings(&["*.test:*", "127.0.0.1:*"], &[]));
    let server = TestServer::http().await;
    let targets = [server.at("web.test"), format!("127.0.0.1:{}", server.port)];
    let served = harness.serve("sess_web", allowlist(&targets)).await;
    for target in &targets {
        let denied = Decision::DeniedAddress(AddressClass::Loopback);
        let record = refused_before_connecting(&harness, &served, target, 403, denied).await;
        assert_eq!(record.address, Some("127.0.0.1".parse().unwrap()));
    }
    assert_eq!(harness.counters.decided(DecisionKind::DeniedAddress), 2);
}

#[tokio::test]
async fn the_operator_bound_applies_to_a_running_session() {
    // The session's list was valid when it was made; the operator has narrowed the bound since.
    let harness = Harness::new(settings(&["web.test:*"], &[LOOPBACK]));
    harness.map("api.test", &[LOOPBACK]);
    let served = harness.serve("sess_old", allowlist(&["api.test:443".into()])).await;
    let denied = Decision::DeniedPolicy(PolicyDenial::NotPermittedByOperator);
    refused_before_connecting(&harness, &served, "api.test:443", 403, denied).await;
}

#[tokio::test]
async fn unresolvable_names_and_address_literals_are_judged_without_connecting() {
    let harness = Harness::new(settings(&["*:*"], &[LOOPBACK]));
    let allow = ["nowhere.test:80", "169.254.169.254:80", "[::1]:80", "[fe80::1]:80", "10.0.0.1:80"]
        .map(String::from);
    let served = harness.serve("sess_x", allowlist(&allow)).await;
    refused_before_connecting(
        &harness,
        &served,
        "nowhere.test:80",
        502,
        Decision::Error(Failure::ResolveFailed),
    )
    .await;
    for (target, class) in [
        ("169.254.169.254:80", AddressClass::LinkLocal),
        ("[::1]:80", AddressClass::Loopback),
        ("[fe80::1]:80", AddressClass::LinkLocal),
        ("10.0.0.1:80", AddressClass::Private),
    ] {
        refused_before_connecting(&harness, &served, target, 403, Decision::DeniedAddress(class)).await;
    }
    assert!(harness.connector.asked().is_empty());
}

#[tokio::test]
async fn malformed_targets_are_bad_requests() {
    let (harness, _server, served) = web().await;
    let bad = Decision::Error(Failure::BadRequest);
    for target in ["web.test", "web.test:0", "web.test:99999"] {
        let record = refused_before_connecting(&harness, &served, target, 400, bad).await;
        assert_eq!((record.host.as_str(), record.port), (target, None));
    }
    // A request line the HTTP parser cannot read names no destination: 400, and nothing to
    // audit.
    let (code, _) = connect(served.address, "[::1", &[]).await.refused();
    assert_eq!(code, 400);
    assert_eq!(harness.audit.records().len(), 3);
}

#[tokio::test]
async fn a_closed_port_is_a_bad_gateway() {
    let harness = Harness::new(loopback_settings());
    harness.map("closed.test", &[LOOPBACK]);
    let port = {
        let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = format!("closed.test:{port}");
    let served = harness.serve("sess_c", allowlist(std::slice::from_ref(&target))).await;
    let (code, body) = connect(served.address, &target, &[]).await.refused();
    assert_eq!((code, body.as_str()), (502, "egress error: connect_failed\n"));
    let record = harness.record(1).await;
    assert_eq!(record.decision, Decision::Error(Failure::ConnectFailed));
    assert_eq!(record.address, Some("127.0.0.1".parse().unwrap()));
}

#[tokio::test]
async fn a_connection_that_never_completes_times_out() {
    let mut settings = loopback_settings();
    settings.connect_timeout_sec = 1;
    let harness = Harness::with_connector(settings, LoopbackOnly::hanging());
    harness.map("slow.test", &[LOOPBACK]);
    let served = harness.serve("sess_s", allowlist(&["slow.test:9".into()])).await;
    let (code, _) = connect(served.address, "slow.test:9", &[]).await.refused();
    assert_eq!(code, 504);
    let record = harness.record(1).await;
    assert_eq!(record.decision, Decision::Error(Failure::ConnectTimeout));
    assert_eq!(record.address, Some("127.0.0.1".parse().unwrap()));
    assert!(record.duration >= Duration::from_secs(1));
}

#[tokio::test]
async fn an_idle_tunnel_is_closed() {
    let mut settings = loopback_settings();
    settings.idle_timeout_sec = 1;
    let (harness, server, served) = web_with(settings).await;
    let target = server.at("web.test");
    let mut tunnel = connect(served.address, &target, &[]).await.tunnel();
    // Nothing is sent either way: the proxy closes the tunnel, and the client reads its end.
    let mut rest = Vec::new();
    step("the idle tunnel's end", tunnel.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    let record = harness.record(1).await;
    assert_eq!(record.decision, Decision::Allowed);
    assert!(record.duration >= Duration::from_secs(1), "{:?}", record.duration);
}
