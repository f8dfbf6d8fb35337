//! Per-session limits: the connection cap, and a bandwidth bucket per session that keeps one
//! session's flood from slowing another's transfer.

use crate::support::*;
use sandbox_egress::{Decision, DecisionKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn connections_past_the_limit_are_refused_until_one_closes() {
    let mut settings = loopback_settings();
    settings.max_connections_per_session = 2;
    let (harness, server, served) = web_with(settings).await;
    let target = server.at("web.test");
    let other = harness.serve("sess_other", allowlist(std::slice::from_ref(&target))).await;

    let first = connect(served.address, &target, &[]).await.tunnel();
    let _second = connect(served.address, &target, &[]).await.tunnel();
    let (code, body) = connect(served.address, &target, &[]).await.refused();
    assert_eq!((code, body.as_str()), (429, "egress denied_limit: too_many_connections\n"));
    assert_eq!(harness.record(1).await.decision, Decision::DeniedLimit);
    assert_eq!(harness.connector.asked().len(), 2, "the refused attempt connected nowhere");

    // Another session has places of its own.
    let (head, _) = get_over(connect(other.address, &target, &[]).await.tunnel(), "web.test", "/").await;
    assert_eq!(status(&head), 200);

    // A closed tunnel gives its place back.
    drop(first);
    step("three records", harness.audit.wait_for(3)).await;
    let (head, _) = get_over(connect(served.address, &target, &[]).await.tunnel(), "web.test", "/").await;
    assert_eq!(status(&head), 200);
    assert_eq!(harness.counters.decided(DecisionKind::DeniedLimit), 1);
    assert_eq!(harness.counters.decided(DecisionKind::Allowed), 4);
}

/// One session floods the proxy through six tunnels reading an endless response; another
/// downloads 6 MiB meanwhile. Each has its own 4 MiB/s bucket (holding one second), so the
/// download takes about 0.5 s (4 MiB at once, 2 MiB at the rate) whatever the flood does; a
/// bucket shared with the flood's six connections would leave it about a seventh of the rate,
/// some 10 s. The bounds are loose on the side a loaded machine could push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_session_does_not_slow_another() {
    const RATE: f64 = (4 << 20) as f64;
    const DOWNLOAD: usize = 6 << 20;
    let mut settings = loopback_settings();
    settings.bandwidth_kib_per_sec = 4096;
    let (harness, server, flooder) = web_with(settings).await;
    let target = server.at("web.test");
    let quiet = harness.serve("sess_quiet", allowlist(std::slice::from_ref(&target))).await;

    let flooded = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..6 {
        let mut tunnel = connect(flooder.address, &target, &[]).await.tunnel();
        let flooded = flooded.clone();
        readers.push(AbortOnDrop(tokio::spawn(async move {
            tunnel.write_all(get_request("web.test", "/forever").as_bytes()).await.unwrap();
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(read @ 1..) = tunnel.read(&mut buffer).await {
                flooded.fetch_add(read as u64, Ordering::Relaxed);
            }
        })));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (flood_before, window) = (flooded.load(Ordering::Relaxed), Instant::now());

    let started = Instant::now();
    let tunnel = connect(quiet.address, &target, &[]).await.tunnel();
    let (head, body) = get_over(tunnel, "web.test", &format!("/bytes/{DOWNLOAD}")).await;
    let took = started.elapsed();
    let flood = flooded.load(Ordering::Relaxed) - flood_before;
    let window = window.elapsed().as_secs_f64();
    drop(readers);

    assert_eq!(status(&head), 200);
    assert_eq!(body.len(), DOWNLOAD);
    assert!(took >= Duration::from_millis(400), "the download's own bucket held it: {took:?}");
    assert!(took < Duration::from_secs(5), "the flood slowed the download: {took:?}");
    // The flood got at most its burst and its rate (with room for a loaded machine's timing).
    let ceiling = RATE + RATE * window * 1.5 + (1 << 20) as f64;
    assert!((flood as f64) < ceiling, "the flood moved {flood} bytes in {window:.2} s");
    assert!(flood > 0, "the flood was flowing");
}
