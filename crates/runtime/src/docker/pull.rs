//! Pulling an image through Docker, its progress stream added up per layer.

use super::DockerRuntime;
use crate::RuntimeError;
use crate::image::{ImageRef, PullProgress};
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use tokio::sync::watch;

/// What one layer's progress messages said so far.
#[derive(Debug, Default, Clone, Copy)]
struct Layer {
    done: u64,
    total: u64,
    complete: bool,
}

/// The layers of one pull, as Docker's progress messages describe them.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    layers: BTreeMap<String, Layer>,
}

impl Tally {
    /// Takes one progress message; `true` when the totals may have changed.
    pub(crate) fn add(&mut self, info: &CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (&info.id, &info.status) else { return false };
        const KNOWN: &[&str] = &[
            "Pulling fs layer",
            "Waiting",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete",
            "Already exists",
        ];
        if !KNOWN.contains(&status.as_str()) {
            return false;
        }
        let l = self.layers.entry(id.clone()).or_default();
        let number = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
        let detail = info.progress_detail.as_ref();
        match status.as_str() {
            "Downloading" => {
                if let Some(total) = number(detail.and_then(|d| d.total)).filter(|t| *t > 0) {
                    l.total = total;
                }
                if let Some(current) = number(detail.and_then(|d| d.current)) {
                    l.done = current;
                }
            }
            "Verifying Checksum" | "Download complete" | "Extracting" => l.done = l.total.max(l.done),
            "Pull complete" | "Already exists" => {
                l.done = l.total.max(l.done);
                l.complete = true;
            }
            _ => {}
        }
        true
    }

    /// The totals over all layers.
    pub(crate) fn progress(&self) -> PullProgress {
        let mut p = PullProgress::default();
        for l in self.layers.values() {
            p.bytes_done += l.done;
            p.bytes_total += l.total;
            p.layers_total += 1;
            p.layers_done += u32::from(l.complete);
        }
        p
    }
}

/// A stable code for why a pull failed, from what Docker said.
pub(crate) fn failure_code(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("manifest unknown") || m.contains("not found") || m.contains("name unknown") {
        "image_not_found"
    } else if m.contains("unauthorized") || m.contains("denied") || m.contains("authentication required") {
        "registry_denied"
    } else if ["connection refused", "no such host", "timeout", "dial tcp", "network is unreachable", "eof"]
        .iter()
        .any(|w| m.contains(w))
    {
        "registry_unreachable"
    } else {
        "pull_failed"
    }
}

fn pull_error(e: bollard::errors::Error) -> RuntimeError {
    let message = match e {
        bollard::errors::Error::DockerStreamError { error } => error,
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => return RuntimeError::Unavailable(other.to_string()),
    };
    RuntimeError::PullFailed { code: failure_code(&message), message }
}

impl DockerRuntime {
    /// Pulls `image`, publishing the totals on `progress` as Docker reports them.
    pub(crate) async fn pull(
        &self,
        image: &str,
        progress: &watch::Sender<PullProgress>,
    ) -> Result<(), RuntimeError> {
        let reference = ImageRef::parse(image).map_err(RuntimeError::Invalid)?;
        let (from_image, tag) = reference.pull_target();
        let mut opts = CreateImageOptionsBuilder::default().from_image(&from_image);
        if !tag.is_empty() {
            opts = opts.tag(&tag);
        }
        let mut stream = self.docker.create_image(Some(opts.build()), None, None);
        let mut tally = Tally::default();
        while let Some(item) = stream.next().await {
            let info = item.map_err(pull_error)?;
            if tally.add(&info) {
                progress.send_replace(tally.progress());
            }
        }
        tracing::info!(image, progress = ?tally.progress(), "image pulled");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ProgressDetail;

    fn msg(id: &str, status: &str, current: Option<i64>, total: Option<i64>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: Some(ProgressDetail { current, total }),
            error_detail: None,
        }
    }

    #[test]
    fn layers_add_up() {
        let mut t = Tally::default();
        assert!(!t.add(&msg("latest", "Pulling from team/python", None, None)));
        t.add(&msg("aaa", "Pulling fs layer", None, None));
        t.add(&msg("bbb", "Pulling fs layer", None, None));
        t.add(&msg("ccc", "Already exists", None, None));
        t.add(&msg("aaa", "Downloading", Some(100), Some(1000)));
        t.add(&msg("bbb", "Downloading", Some(5), Some(50)));
        assert_eq!(
            t.progress(),
            PullProgress { bytes_done: 105, bytes_total: 1050, layers_done: 1, layers_total: 3 }
        );
        t.add(&msg("bbb", "Download complete", None, None));
        t.add(&msg("bbb", "Extracting", Some(10), Some(50)));
        t.add(&msg("bbb", "Pull complete", None, None));
        assert_eq!(
            t.progress(),
            PullProgress { bytes_done: 1050 - 900, bytes_total: 1050, layers_done: 2, layers_total: 3 }
        );
        t.add(&msg("aaa", "Verifying Checksum", None, None));
        t.add(&msg("aaa", "Pull complete", None, None));
        assert_eq!(
            t.progress(),
            PullProgress { bytes_done: 1050, bytes_total: 1050, layers_done: 3, layers_total: 3 }
        );
        assert!(!t.add(&msg("sha256:x", "Digest: sha256:x", None, None)));
    }

    #[test]
    fn failures_get_stable_codes() {
        assert_eq!(
            failure_code("manifest for 127.0.0.1:5000/x:1 not found: manifest unknown"),
            "image_not_found"
        );
        assert_eq!(
            failure_code(
                r#"Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused"#
            ),
            "registry_unreachable"
        );
        assert_eq!(failure_code("pull access denied for x, repository does not exist"), "registry_denied");
        assert_eq!(failure_code("filesystem layer verification failed"), "pull_failed");
    }
}
