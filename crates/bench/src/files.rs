//! File I/O: REST upload and download in MiB/s against plain file writes and reads on this host.

use crate::host::{time_read, time_write};
use crate::report::Metric;
use crate::server::Api;
use crate::stats::mib_per_sec;
use anyhow::{Result, ensure};
use bytes::Bytes;
use std::path::Path;
use std::time::Instant;

/// One file size and how many samples it gets.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Bytes.
    pub bytes: u64,
    /// Samples (after warm-up).
    pub samples: usize,
}

/// `1MiB`, `100MiB`.
pub fn label(bytes: u64) -> String {
    format!("{}MiB", bytes >> 20)
}

/// Deterministic incompressible bytes (xorshift64*).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs the section in a new session of `api` (deleted at the end); metric names start with
/// `prefix` (`files.local`, `files.s3`). The host baselines use a file in `scratch`; their rows
/// are part of the result when `with_baselines` (once per run).
pub async fn run(
    api: &Api,
    prefix: &str,
    sizes: &[Size],
    warmup: usize,
    scratch: &Path,
    with_baselines: bool,
) -> Result<Vec<Metric>> {
    let session = api.create_session().await?;
    let mut out = Vec::new();
    for size in sizes {
        let label = label(size.bytes);
        let data = Bytes::from(pattern(size.bytes as usize, size.bytes));
        let path = format!("bench/{label}.bin");
        let local = scratch.join(format!("{label}.bin"));
        let (mut up, mut down, mut write, mut read) = (vec![], vec![], vec![], vec![]);
        for i in 0..warmup + size.samples {
            let t = Instant::now();
            api.upload(&session, &path, data.clone()).await?;
            let up_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let got = api.download(&session, &path).await?;
            let down_s = t.elapsed().as_secs_f64();
            ensure!(got == data, "downloaded {path} ({} bytes) differs from what was uploaded", got.len());
            let (w, r) = {
                let (local, data) = (local.clone(), data.clone());
                tokio::task::spawn_blocking(move || {
                    anyhow::Ok((time_write(&local, &data)?, time_read(&local, &data)?))
                })
                .await??
            };
            if i >= warmup {
                up.push(mib_per_sec(size.bytes, up_s));
                down.push(mib_per_sec(size.bytes, down_s));
                write.push(mib_per_sec(size.bytes, w));
                read.push(mib_per_sec(size.bytes, r));
            }
        }
        let _ = std::fs::remove_file(&local);
        let write = Metric::measured(&format!("baseline.fs_write.{label}"), "MiB/s", &write)?;
        let read = Metric::measured(&format!("baseline.fs_read.{label}"), "MiB/s", &read)?;
        out.push(Metric::measured(&format!("{prefix}.upload.{label}"), "MiB/s", &up)?.vs(&write));
        out.push(Metric::measured(&format!("{prefix}.download.{label}"), "MiB/s", &down)?.vs(&read));
        if with_baselines {
            out.extend([write, read]);
        }
    }
    api.delete_session(&session).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_sized() {
        assert_eq!(pattern(1000, 7), pattern(1000, 7));
        assert_ne!(pattern(1000, 7), pattern(1000, 8));
        assert_eq!(pattern(13, 1).len(), 13);
        // Incompressible enough: no byte value dominates.
        let p = pattern(1 << 16, 3);
        let zeros = p.iter().filter(|b| **b == 0).count();
        assert!(zeros < 1000, "{zeros} zero bytes in 64 KiB");
    }

    #[test]
    fn labels() {
        assert_eq!(label(1 << 20), "1MiB");
        assert_eq!(label(100 << 20), "100MiB");
    }
}
