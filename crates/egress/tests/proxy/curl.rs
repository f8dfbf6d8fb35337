//! A real client: curl through the proxy, plain HTTP and HTTPS (a CONNECT tunnel), and a
//! refusal it reports.

use crate::support::*;
use sandbox_egress::{Decision, PolicyDenial, RequestKind};
use std::process::Output;

async fn curl(proxy: &str, args: &[&str]) -> Output {
    let path = std::env::var("PATH").unwrap_or_default();
    step(
        "curl",
        tokio::process::Command::new("curl")
            .env_clear()
            .env("PATH", path)
            .args(["--silent", "--show-error", "--max-time", "10", "--proxy", proxy])
            .args(args)
            .output(),
    )
    .await
    .expect("curl runs (scripts/setup.sh installs it)")
}

#[tokio::test]
async fn curl_reaches_http_and_https_through_the_proxy() {
    let harness = Harness::new(loopback_settings());
    let web = TestServer::http().await;
    let (tls, _) = TestServer::tls("tls.test").await;
    let served = harness.serve("sess_curl", allowlist(&[web.at("web.test"), tls.at("tls.test")])).await;
    let proxy = format!("http://{}", served.address);

    let plain = curl(&proxy, &["--fail", &format!("http://web.test:{}/bytes/5", web.port)]).await;
    assert!(plain.status.success(), "{}", String::from_utf8_lossy(&plain.stderr));
    assert_eq!(plain.stdout, b"xxxxx");

    // The certificate is self-signed: -k, since what is tested is the tunnel, not the trust.
    let secure = curl(&proxy, &["--fail", "--insecure", &format!("https://tls.test:{}/", tls.port)]).await;
    assert!(secure.status.success(), "{}", String::from_utf8_lossy(&secure.stderr));
    assert_eq!(secure.stdout, b"hello\n");

    let refused = curl(&proxy, &[&format!("https://tls.test:{}/", tls.port + 1)]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("403"), "{stderr}");

    let records = step("three records", harness.audit.wait_for(3)).await;
    let mut seen: Vec<(RequestKind, Decision)> = records.iter().map(|r| (r.kind, r.decision)).collect();
    seen.sort_by_key(|(kind, decision)| (kind.as_str(), decision.to_string()));
    assert_eq!(
        seen,
        [
            (RequestKind::Connect, Decision::Allowed),
            (RequestKind::Connect, Decision::DeniedPolicy(PolicyDenial::NotInAllowList)),
            (RequestKind::Http, Decision::Allowed),
        ]
    );
}
