//! Egress isolation: one session's downloads through the egress proxy from a server on the
//! host's loopback, alone and while another session floods the proxy with parallel downloads.

use crate::docker::ms_since;
use crate::report::{Metric, Target};
use crate::server::Api;
use anyhow::{Context, Result, anyhow, ensure};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The name sessions download from; the server's `egress.hosts` maps it to 127.0.0.1.
pub const HOST: &str = "downloads.bench.test";

/// Bytes of each measured download.
const DOWNLOAD_BYTES: usize = 8 << 20;

/// Parallel downloads of the flooding session.
const FLOOD_THREADS: usize = 32;

/// Seconds the flood runs before the loaded downloads start.
const FLOOD_LEAD_SECS: u64 = 2;

/// The `SANDBOX_*` settings of the section's server: sessions may reach [`HOST`] on `port`,
/// which the proxy resolves to the host's loopback; the per-session limits are the defaults.
pub fn server_env(port: u16) -> Vec<(String, String)> {
    [
        ("SANDBOX_POOLS__DEFAULT_SIZE", "0".to_owned()),
        ("SANDBOX_EGRESS__PERMITTED", format!("{HOST}:{port}")),
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1".to_owned()),
        ("SANDBOX_EGRESS__HOSTS", format!(r#"{{"{HOST}": ["127.0.0.1"]}}"#)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// An HTTP server on 127.0.0.1 answering `GET /bytes/N` with N zero bytes.
pub struct Downloads {
    port: u16,
    accept: tokio::task::JoinHandle<()>,
}

impl Downloads {
    /// Starts it on a free port.
    pub async fn start() -> Result<Downloads> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the download server")?;
        let port = listener.local_addr()?.port();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client));
            }
        });
        Ok(Downloads { port, accept })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Answers one request (errors end the connection: a flood's downloads are cut when it stops).
async fn serve(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let size = head
        .split_whitespace()
        .nth(1)
        .and_then(|target| target.rsplit("/bytes/").next())
        .and_then(|n| n.parse::<usize>().ok());
    let Some(size) = size else {
        let _ = client.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
        return;
    };
    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
    if client.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let chunk = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        if client.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        left -= n;
    }
}

/// Python that downloads `bytes` from the server through the session's proxy and prints the
/// milliseconds it took.
fn download_code(port: u16, bytes: usize) -> String {
    format!(
        "import time, urllib.request\n\
         t = time.perf_counter()\n\
         n = len(urllib.request.urlopen('http://{HOST}:{port}/bytes/{bytes}', timeout=120).read())\n\
         assert n == {bytes}, n\n\
         print((time.perf_counter() - t) * 1000)\n"
    )
}

/// Python that keeps [`FLOOD_THREADS`] downloads going for `secs` seconds and prints the bytes
/// it moved.
fn flood_code(port: u16, secs: u64) -> String {
    format!(
        "import threading, time, urllib.request\n\
         stop = time.time() + {secs}\n\
         moved = [0] * {FLOOD_THREADS}\n\
         def pull(i):\n\
         \x20   while time.time() < stop:\n\
         \x20       try:\n\
         \x20           with urllib.request.urlopen('http://{HOST}:{port}/bytes/{big}', timeout=30) as r:\n\
         \x20               while time.time() < stop:\n\
         \x20                   b = r.read(65536)\n\
         \x20                   if not b:\n\
         \x20                       break\n\
         \x20                   moved[i] += len(b)\n\
         \x20       except Exception:\n\
         \x20           time.sleep(0.05)\n\
         threads = [threading.Thread(target=pull, args=(i,)) for i in range({FLOOD_THREADS})]\n\
         for t in threads:\n\
         \x20   t.start()\n\
         for t in threads:\n\
         \x20   t.join()\n\
         print(sum(moved))\n",
        big = 1u64 << 30,
    )
}

/// Runs the section on a server started with [`server_env`] for `downloads`: `samples`
/// downloads alone, then as many while another session floods, with a warm-up each.
pub async fn run(api: &Api, downloads: &Downloads, samples: usize, warmup: usize) -> Result<Vec<Metric>> {
    let port = downloads.port();
    let network = json!({"mode": "allowlist", "allow": [format!("{HOST}:{port}")]});
    let body = json!({"template_id": crate::server::TEMPLATE, "network": network});
    let victim = api.try_create_session(body.clone()).await?.map_err(|r| anyhow!("{}", r.message))?;
    let flooder = api.try_create_session(body).await?.map_err(|r| anyhow!("{}", r.message))?;
    let alone = series(api, &victim, port, warmup, samples).await?;
    // The flood runs as long as the loaded series can take, with room to spare; the series
    // checks it is still running when each download ends.
    let flood_secs = FLOOD_LEAD_SECS + 5 * (warmup + samples) as u64;
    let started = Instant::now();
    let flood = {
        let (api, flooder, code) = (api.clone(), flooder.clone(), flood_code(port, flood_secs));
        tokio::spawn(async move { api.run_python(&flooder, &code, flood_secs + 60).await })
    };
    tokio::time::sleep(Duration::from_secs(FLOOD_LEAD_SECS)).await;
    let loaded = series(api, &victim, port, warmup, samples).await;
    let loaded_secs = started.elapsed().as_secs_f64();
    let flooded = flood.await.context("the flood's task")??;
    let loaded = loaded?;
    ensure!(
        loaded_secs < flood_secs as f64,
        "the flood ended ({flood_secs} s) before the loaded downloads did ({loaded_secs:.1} s)"
    );
    let moved: f64 = flooded.trim().parse().with_context(|| format!("the flood printed {flooded:?}"))?;
    for s in [&victim, &flooder] {
        api.delete_session(s).await?;
    }
    let mib = DOWNLOAD_BYTES >> 20;
    let alone = Metric::measured("egress.download.alone", "ms", &alone)?
        .note(format!("{mib} MiB from the host's loopback through the session's relay and the egress proxy"));
    let loaded = Metric::measured("egress.download.flooded", "ms", &loaded)?
        .vs(&alone)
        .target(Target::RatioAtMost(2.0))
        .note(format!(
            "the same while another session keeps {FLOOD_THREADS} downloads going ({:.1} MiB/s for {flood_secs} s)",
            moved / (1 << 20) as f64 / flood_secs as f64
        ));
    Ok(vec![loaded, alone])
}

/// `warmup + samples` downloads in `session`, one after another; the measured ones' times (ms)
/// as the sandbox timed them.
async fn series(api: &Api, session: &str, port: u16, warmup: usize, samples: usize) -> Result<Vec<f64>> {
    let code = download_code(port, DOWNLOAD_BYTES);
    let mut times = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let t = Instant::now();
        let out = api.run_python(session, &code, 120).await?;
        let ms: f64 = out.trim().parse().with_context(|| format!("a download printed {out:?}"))?;
        ensure!(ms <= ms_since(t), "a download took {ms} ms inside an execution of {} ms", ms_since(t));
        if i >= warmup {
            times.push(ms);
        }
    }
    Ok(times)
}
