//! `sandbox files …`: list, copy (both ways, directories too, streamed), print and delete
//! workspace files. A remote path is written `SESSION:PATH` (`:PATH` for the session of
//! `--session` / `$SANDBOX_SESSION`), PATH relative to the workspace (`/workspace/x`, `/x` and
//! `x` are one file).

use crate::client::{Client, Error, Result};
use crate::output;
use crate::session::{self, SessionArg};
use clap::Subcommand;
use futures_util::StreamExt;
use indicatif::ProgressBar;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// `sandbox files` subcommands.
#[derive(Debug, Subcommand)]
pub enum FilesCmd {
    /// List a workspace directory (default: its root).
    Ls {
        /// `[SESSION:]PATH`.
        #[arg(default_value = "")]
        path: String,
        /// Every level below, not just the directory's own entries.
        #[arg(short = 'R', long)]
        recursive: bool,
        #[command(flatten)]
        session: SessionArg,
    },
    /// Copy files or directories into or out of a session: one of SOURCE and DEST is
    /// `SESSION:PATH` (or `:PATH`); `-` as the local side is standard input or output.
    Cp {
        /// What to copy.
        source: String,
        /// Where to.
        dest: String,
        /// Never show a progress bar.
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        session: SessionArg,
    },
    /// Print a file on standard output.
    Cat {
        /// `[SESSION:]PATH`.
        path: String,
        #[command(flatten)]
        session: SessionArg,
    },
    /// Delete files (and, with -r, directories with their content).
    Rm {
        /// `[SESSION:]PATH`s.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Delete directories with their content.
        #[arg(short, long)]
        recursive: bool,
        #[command(flatten)]
        session: SessionArg,
    },
}

/// A place in a session's workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    session: String,
    /// Relative to the workspace, no leading or trailing `/` (empty: the root).
    path: String,
}

impl Remote {
    /// `SESSION:PATH` or `:PATH` (the default session) as a remote place; `None` for a local
    /// path (no `:` before the first `/`).
    fn parse(text: &str, default: &SessionArg) -> Result<Option<Remote>> {
        let Some((session, path)) = text.split_once(':') else { return Ok(None) };
        if session.contains('/') {
            return Ok(None);
        }
        let session = if session.is_empty() { default.id()?.to_owned() } else { session.to_owned() };
        Ok(Some(Remote { session, path: workspace_path(path) }))
    }

    /// `[SESSION:]PATH`: a remote place, in the default session unless it names one.
    fn of(text: &str, default: &SessionArg) -> Result<Remote> {
        match Remote::parse(text, default)? {
            Some(r) => Ok(r),
            None => Ok(Remote { session: default.id()?.to_owned(), path: workspace_path(text) }),
        }
    }

    /// A place below this one.
    fn join(&self, name: &str) -> Remote {
        let path = if self.path.is_empty() { name.to_owned() } else { format!("{}/{name}", self.path) };
        Remote { session: self.session.clone(), path }
    }

    /// The last component of the path.
    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    /// `/api/v1/sessions/{id}/<segments>`.
    fn api(&self, client: &Client, segments: &[&str]) -> url::Url {
        client.api(["sessions", self.session.as_str()].into_iter().chain(segments.iter().copied()))
    }

    /// The file's download and delete URL.
    fn file_url(&self, client: &Client) -> url::Url {
        let segments: Vec<&str> = self.path.split('/').collect();
        client.api(["sessions", self.session.as_str(), "files"].into_iter().chain(segments))
    }
}

/// A path as the API takes it: relative to the workspace.
fn workspace_path(path: &str) -> String {
    let path = path.strip_prefix("/workspace").filter(|p| p.is_empty() || p.starts_with('/')).unwrap_or(path);
    path.trim_matches('/').to_owned()
}

/// Runs a `sandbox files` subcommand.
pub async fn run(client: &Client, cmd: FilesCmd, as_json: bool) -> Result<()> {
    match cmd {
        FilesCmd::Ls { path, recursive, session } => {
            let remote = Remote::of(&path, &session)?;
            // A file is listed alone, as `ls` does (`--json`: its stat).
            let listing = match list(client, &remote, !recursive).await {
                Err(e) if e.code == "not_a_directory" => {
                    let mut url = remote.api(client, &["files-stat"]);
                    url.query_pairs_mut().append_pair("path", &remote.path);
                    let info = client.get(url).await?;
                    if as_json {
                        output::json(&info);
                        return Ok(());
                    }
                    json!({ "files": [info] })
                }
                other => other?,
            };
            if as_json {
                output::json(&listing);
            } else {
                let rows: Vec<Vec<String>> = entries(&listing)
                    .iter()
                    .map(|e| {
                        let dir = e["type"] == "directory";
                        let size =
                            if dir { String::new() } else { output::size(e["size"].as_u64().unwrap_or(0)) };
                        let modified = output::text(&e["modified_at"])
                            .chars()
                            .take(19)
                            .collect::<String>()
                            .replace('T', " ");
                        let name = format!("{}{}", output::text(&e["path"]), if dir { "/" } else { "" });
                        vec![output::text(&e["type"]), size, modified, name]
                    })
                    .collect();
                output::table(&["TYPE", "SIZE", "MODIFIED", "PATH"], &rows);
            }
        }
        FilesCmd::Cat { path, session } => {
            let remote = Remote::of(&path, &session)?;
            let resp = client.send(client.request(Method::GET, remote.file_url(client))).await?;
            copy_body(resp, &mut tokio::io::stdout(), &ProgressBar::hidden()).await?;
        }
        FilesCmd::Rm { paths, recursive, session: default } => {
            session::for_each(&paths, "removed", as_json, |p| {
                let remote = Remote::of(p, &default);
                async move {
                    let mut url = remote?.file_url(client);
                    if recursive {
                        url.set_query(Some("recursive=true"));
                    }
                    client.delete(url).await
                }
            })
            .await?;
        }
        FilesCmd::Cp { source, dest, no_progress, session } => {
            let copied = match (Remote::parse(&source, &session)?, Remote::parse(&dest, &session)?) {
                (None, Some(to)) => {
                    upload(client, Path::new(&source), to, dest.ends_with('/'), no_progress).await?
                }
                (Some(from), None) => download(client, from, &dest, no_progress).await?,
                _ => {
                    return Err(Error::argument(
                        "cp copies between a local path and SESSION:PATH (one of each)",
                    ));
                }
            };
            if as_json {
                output::json(&json!({ "files": copied }));
            } else if dest != "-" {
                for (from, to, size) in copied.iter().map(|c| (&c["from"], &c["to"], &c["size"])) {
                    eprintln!(
                        "{} -> {} ({})",
                        output::text(from),
                        output::text(to),
                        output::size(size.as_u64().unwrap_or(0))
                    );
                }
            }
        }
    }
    Ok(())
}

/// Entries asked for per page of a listing (the server's most).
const LIST_PAGE: u64 = 10_000;
/// The furthest offset the server pages a listing to.
const LIST_MAX_OFFSET: u64 = 100_000;

/// The listing of a remote directory: its own entries, or (`shallow` false) every level below,
/// page after page while the server says more follow. The first page's document, holding every
/// page's entries in `files`.
async fn list(client: &Client, dir: &Remote, shallow: bool) -> Result<Value> {
    let page = |offset: u64| {
        let mut url = dir.api(client, &["files"]);
        url.query_pairs_mut()
            .append_pair("path", &dir.path)
            .append_pair("limit", &LIST_PAGE.to_string())
            .append_pair("offset", &offset.to_string());
        if shallow {
            url.query_pairs_mut().append_pair("depth", "1");
        }
        client.get(url)
    };
    let mut listing = page(0).await?;
    let mut offset = 0;
    while listing["has_more"] == json!(true) && offset + LIST_PAGE <= LIST_MAX_OFFSET {
        offset += LIST_PAGE;
        let next = page(offset).await?;
        let more = next["files"].as_array().cloned().unwrap_or_default();
        if let Some(files) = listing["files"].as_array_mut() {
            files.extend(more);
        }
        listing["has_more"] = next["has_more"].clone();
    }
    if listing["has_more"] == json!(true) {
        eprintln!("sandbox: the listing of {} stops at {} entries", dir.path, offset + LIST_PAGE);
    }
    Ok(listing)
}

/// The entries of a listing.
fn entries(listing: &Value) -> Vec<Value> {
    listing["files"].as_array().cloned().unwrap_or_default()
}

/// A record of one copied file.
fn copied(from: impl std::fmt::Display, to: impl std::fmt::Display, size: u64) -> Value {
    json!({"from": from.to_string(), "to": to.to_string(), "size": size})
}

/// Uploads a local file or directory (or standard input, `-`) to `to`: into it when it is an
/// existing directory or was written with a trailing `/` (`into`).
async fn upload(
    client: &Client,
    local: &Path,
    to: Remote,
    into: bool,
    no_progress: bool,
) -> Result<Vec<Value>> {
    if local.as_os_str() == "-" {
        if to.path.is_empty() {
            return Err(Error::argument("copying standard input needs a file name: SESSION:PATH"));
        }
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(tokio::io::stdin()));
        let size = put(client, &to, body, None).await?;
        return Ok(vec![copied("-", &to.path, size)]);
    }
    let meta =
        std::fs::metadata(local).map_err(|e| Error::new("io_error", format!("{}: {e}", local.display())))?;
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let into_dir = into || to.path.is_empty() || is_remote_dir(client, &to).await?;
    // A directory named with a trailing `/` is made when missing.
    let parent = (into && !to.path.is_empty()).then(|| to.clone());
    let base = if into_dir { to.join(&name) } else { to };
    // (local file, remote place, size) for every file; directories to make, empty ones included.
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    if meta.is_dir() {
        walk(local, &base, &mut files, &mut dirs)?;
    } else {
        dirs.extend(parent);
        files.push((local.to_path_buf(), base, meta.len()));
    }
    let bar = bar(&format!("uploading {name}"), files.iter().map(|f| f.2).sum(), no_progress);
    for dir in &dirs {
        client.post(dir.api(client, &["directories"]), &json!({"path": dir.path})).await?;
    }
    let mut done = Vec::new();
    for (path, remote, size) in files {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::new("io_error", format!("{}: {e}", path.display())))?;
        let progress = bar.clone();
        let stream = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
            if let Ok(c) = chunk {
                progress.inc(c.len() as u64);
            }
        });
        let sent = put(client, &remote, reqwest::Body::wrap_stream(stream), Some(size)).await?;
        done.push(copied(path.display(), &remote.path, sent));
    }
    bar.finish_and_clear();
    Ok(done)
}

/// Lists the files below `dir` (as remote places below `base`) and the directories to make.
fn walk(
    dir: &Path,
    base: &Remote,
    files: &mut Vec<(PathBuf, Remote, u64)>,
    dirs: &mut Vec<Remote>,
) -> Result<()> {
    dirs.push(base.clone());
    let mut entries = std::fs::read_dir(dir)?.collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = std::fs::metadata(entry.path())?;
        if meta.is_dir() {
            walk(&entry.path(), &base.join(&name), files, dirs)?;
        } else if meta.is_file() {
            files.push((entry.path(), base.join(&name), meta.len()));
        }
    }
    Ok(())
}

/// Whether `remote` is an existing directory.
async fn is_remote_dir(client: &Client, remote: &Remote) -> Result<bool> {
    let mut url = remote.api(client, &["files-stat"]);
    url.query_pairs_mut().append_pair("path", &remote.path);
    match client.get(url).await {
        Ok(info) => Ok(info["type"] == "directory"),
        Err(e) if e.code == "file_not_found" => Ok(false),
        Err(e) => Err(e),
    }
}

/// Uploads `body` (`size` bytes when known) as the file at `to`; answers the stored size.
async fn put(client: &Client, to: &Remote, body: reqwest::Body, size: Option<u64>) -> Result<u64> {
    let mut url = to.api(client, &["files", "upload"]);
    url.query_pairs_mut().append_pair("path", &to.path);
    let mut req =
        client.request(Method::POST, url).header("content-type", "application/octet-stream").body(body);
    if let Some(n) = size {
        req = req.header("content-length", n);
    }
    let answer = crate::client::json_of(client.send(req).await?).await?;
    Ok(answer["size"].as_u64().unwrap_or(0))
}

/// Downloads a remote file or directory to `local` (into it when it is an existing directory;
/// `-`: standard output).
async fn download(client: &Client, from: Remote, local: &str, no_progress: bool) -> Result<Vec<Value>> {
    let resp = client.send(client.request(Method::GET, from.file_url(client))).await;
    let resp = match resp {
        Err(e) if e.code == "is_a_directory" || from.path.is_empty() => {
            return download_dir(client, from, local, no_progress).await;
        }
        other => other?,
    };
    let total = resp.content_length().unwrap_or(0);
    let bar = bar(&format!("downloading {}", from.path), total, no_progress);
    if local == "-" {
        let size = copy_body(resp, &mut tokio::io::stdout(), &bar).await?;
        bar.finish_and_clear();
        return Ok(vec![copied(&from.path, "-", size)]);
    }
    let mut target = PathBuf::from(local);
    if local.ends_with('/') || target.is_dir() {
        target.push(from.name());
    }
    let size = save(resp, &target, &bar).await?;
    bar.finish_and_clear();
    Ok(vec![copied(&from.path, target.display(), size)])
}

/// Downloads a remote directory, every level, to `local` (into it when it exists).
async fn download_dir(client: &Client, from: Remote, local: &str, no_progress: bool) -> Result<Vec<Value>> {
    if local == "-" {
        return Err(Error::argument(format!(
            "{} is a directory: it cannot go to standard output",
            from.path
        )));
    }
    let mut root = PathBuf::from(local);
    if root.is_dir() && !from.path.is_empty() {
        root.push(from.name());
    }
    let listing = list(client, &from, false).await?;
    let all = entries(&listing);
    let prefix = if from.path.is_empty() { String::new() } else { format!("{}/", from.path) };
    let relative = |e: &Value| output::text(&e["path"]).strip_prefix(&prefix).map(str::to_owned);
    let total = all.iter().filter(|e| e["type"] == "file").filter_map(|e| e["size"].as_u64()).sum();
    let bar = bar(
        &format!("downloading {}", if from.path.is_empty() { "/" } else { &from.path }),
        total,
        no_progress,
    );
    tokio::fs::create_dir_all(&root).await?;
    let mut done = Vec::new();
    for entry in &all {
        let Some(rel) = relative(entry) else { continue };
        let target = root.join(&rel);
        match entry["type"].as_str() {
            Some("directory") => tokio::fs::create_dir_all(&target).await?,
            Some("file") => {
                let remote = Remote { session: from.session.clone(), path: format!("{prefix}{rel}") };
                let resp = client.send(client.request(Method::GET, remote.file_url(client))).await?;
                let size = save(resp, &target, &bar).await?;
                done.push(copied(&remote.path, target.display(), size));
            }
            _ => {} // links and special files stay behind
        }
    }
    bar.finish_and_clear();
    Ok(done)
}

/// A transfer's progress bar, unless asked for none.
fn bar(label: &str, total: u64, none: bool) -> ProgressBar {
    if none { ProgressBar::hidden() } else { output::transfer(label, total) }
}

/// Writes a response body to the file at `path` (its parent directories made).
async fn save(resp: reqwest::Response, path: &Path, bar: &ProgressBar) -> Result<u64> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await?;
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::new("io_error", format!("{}: {e}", path.display())))?;
    let size = copy_body(resp, &mut file, bar).await?;
    file.sync_all().await?;
    Ok(size)
}

/// Streams a response body into `out`, chunk by chunk; answers the byte count.
async fn copy_body(
    resp: reqwest::Response,
    out: &mut (impl AsyncWriteExt + Unpin),
    bar: &ProgressBar,
) -> Result<u64> {
    let mut body = resp.bytes_stream();
    let mut size = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).await?;
        size += chunk.len() as u64;
        bar.inc(chunk.len() as u64);
    }
    out.flush().await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_places_are_session_colon_path() {
        let none = SessionArg { session: None };
        let dflt = SessionArg { session: Some("s1".into()) };
        let r = |session: &str, path: &str| Some(Remote { session: session.into(), path: path.into() });
        assert_eq!(Remote::parse("sess_a:/workspace/x/y", &none).unwrap(), r("sess_a", "x/y"));
        assert_eq!(Remote::parse("sess_a:x/", &none).unwrap(), r("sess_a", "x"));
        assert_eq!(Remote::parse(":/data", &dflt).unwrap(), r("s1", "data"));
        assert_eq!(Remote::parse("s:", &none).unwrap(), r("s", ""));
        assert_eq!(Remote::parse("./a:b", &none).unwrap(), None);
        assert_eq!(Remote::parse("local.txt", &none).unwrap(), None);
        assert_eq!(Remote::parse(":x", &none).unwrap_err().code, "invalid_argument");
        assert_eq!(
            Remote::of("/workspacefoo", &dflt).unwrap(),
            Remote { session: "s1".into(), path: "workspacefoo".into() }
        );
    }
}
