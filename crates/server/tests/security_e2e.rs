//! Attacks on the control plane itself, tried through the public API of the real
//! `sandbox-server` binary on a real Docker daemon: each test is the attack, and passes only when
//! it failed.

mod common;

use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A file only root can read on the host, with a marker no workspace ever holds.
fn plant_host_secret(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let marker = format!("HOST-SECRET-{}-{}", std::process::id(), rand_suffix());
    let path = dir.join("host-secret");
    std::fs::write(&path, format!("Name: leaked\nVersion: 1.0\n{marker}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (path, marker)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Python that swaps regular files with symlinks to `target` (and a directory with a symlink to
/// `target_dir`) with `renameat2(RENAME_EXCHANGE)` as fast as it can for `seconds`.
fn swapper(target: &str, target_dir: &str, seconds: u32) -> String {
    format!(
        r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
os.makedirs('swap/d', exist_ok=True)
open('swap/d/inner.txt', 'w').write('inner\n')
# Filler, so that a copier's check and use of each name lie far apart.
for i in range(1500):
    open('swap/filler%04d' % i, 'w').write('filler\n')
pairs = []
for i in range(4):
    a, b = 'swap/f%d' % i, 'swap/l%d' % i
    open(a, 'w').write('innocent\n')
    if os.path.lexists(b):
        os.remove(b)
    os.symlink({target:?}, b)
    pairs.append((a.encode(), b.encode()))
if os.path.lexists('swap/ld'):
    os.remove('swap/ld')
os.symlink({target_dir:?}, 'swap/ld')
pairs.append((b'swap/d', b'swap/ld'))
open('swap/ready', 'w').write('1')
end = time.time() + {seconds}
n = 0
while time.time() < end:
    for a, b in pairs:
        libc.syscall(316, -100, a, -100, b, 2)
    n += 1
print('swapped', n)
"#
    )
}

/// Every regular file of a session but the swapper's filler, path and bytes, read through the
/// files API.
async fn all_files(srv: &Server, id: &str) -> Vec<(String, Vec<u8>)> {
    let (s, listing) =
        srv.call(Method::GET, &format!("/api/v1/sessions/{id}/files?limit=10000"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK, "{listing}");
    let mut out = Vec::new();
    for f in listing["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        if f["type"] != "file" || path.contains("/filler") {
            continue;
        }
        let resp = srv
            .http
            .get(srv.url(&format!("/api/v1/sessions/{id}/files/{path}")))
            .bearer_auth(&srv.key)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK {
            out.push((path.to_owned(), resp.bytes().await.unwrap().to_vec()));
        }
    }
    out
}

/// Item 1 of the security pass: a new session resumed from a running one whose code swaps files
/// and symlinks to host paths never receives anything from outside the source workspace, and
/// every attempt ends in a running session with a complete copy or a clean failure.
#[tokio::test]
async fn resuming_a_workspace_never_follows_the_tenants_links_on_the_host() {
    let srv = Server::start(&[]).await;
    let (secret, marker) = plant_host_secret(srv.dir.path());
    let source = srv.create_session(&srv.key, "python-basic").await;
    let code = swapper(&secret.display().to_string(), &srv.dir.path().display().to_string(), 75);
    let (s, sub) = srv
        .call(
            Method::POST,
            &format!("/api/v1/executions/sessions/{source}/execute"),
            &srv.key,
            Some(json!({"code": code, "language": "python", "timeout": 120})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    common::eventually(Duration::from_secs(30), "the swapper to start", || async {
        let files = all_files(&srv, &source).await;
        files.iter().any(|(p, _)| p == "swap/ready").then_some(())
    })
    .await;
    let (mut copied, mut refused) = (0, 0);
    for attempt in 0..20 {
        let (s, body) = srv
            .call(
                Method::POST,
                "/api/v1/sessions",
                &srv.key,
                Some(json!({"template_id": "python-basic", "source_session_id": source})),
            )
            .await;
        let id = body["id"].as_str().map(str::to_owned);
        match (s, body["status"].as_str()) {
            (StatusCode::CREATED, Some("running")) => {
                let id = id.unwrap();
                let files = all_files(&srv, &id).await;
                for (path, bytes) in &files {
                    let text = String::from_utf8_lossy(bytes);
                    assert!(!text.contains(&marker), "attempt {attempt}: {path} holds the host's secret");
                    assert!(
                        !text.contains("SQLite format") && !text.contains("test-admin-key"),
                        "attempt {attempt}: {path} holds a file of the server's data directory"
                    );
                }
                // A complete copy of what did not change meanwhile (entries swapped while being
                // read may be left out, never replaced by something from outside).
                let (_, listing) = srv
                    .call(
                        Method::GET,
                        &format!("/api/v1/sessions/{id}/files?path=swap&limit=10000"),
                        &srv.key,
                        None,
                    )
                    .await;
                let fillers = listing["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|f| f["name"].as_str().unwrap().starts_with("filler"))
                    .count();
                assert_eq!(fillers, 1500, "attempt {attempt}: the copy lost files");
                assert!(files.iter().any(|(p, _)| p == "swap/ready"), "attempt {attempt}: {files:?}");
                println!(
                    "attempt {attempt}: {:?}",
                    files.iter().map(|(p, b)| (p.as_str(), b.len())).collect::<Vec<_>>()
                );
                copied += 1;
                let (s, _) =
                    srv.call(Method::DELETE, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
                assert_eq!(s, StatusCode::NO_CONTENT);
            }
            (status, _) => {
                // A clean refusal: an error body, and no session left half-made.
                assert!(body["code"].is_string(), "attempt {attempt}: {status} {body}");
                if let Some(id) = id {
                    let (_, after) =
                        srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
                    assert_ne!(after["status"], "running", "attempt {attempt}: {after}");
                }
                println!("attempt {attempt}: refused {status} {body}");
                refused += 1;
            }
        }
    }
    println!("copies: {copied}, refusals: {refused}");
    assert!(copied > 0, "no attempt produced a session");
    let leftovers: Value = json!(srv.log().lines().filter(|l| l.contains("panicked")).collect::<Vec<_>>());
    assert_eq!(leftovers, json!([]), "the server panicked");
}

/// Item 3: a package index the operator did not allow is refused before anything starts, and
/// never receives a connection: a tenant cannot turn the installer into a port scanner of the
/// operator's network.
#[tokio::test]
async fn a_package_index_the_operator_did_not_allow_is_never_contacted() {
    let index = sandbox_e2e::pypi::TestIndex::start().await;
    index.publish("sbx-probe", "1.0.0", &[], "X = 1\n");
    // The proxy may reach the host's loopback, where the "internal" service listens.
    let srv = Server::start(&[("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1")]).await;
    let (s, body) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            &srv.key,
            Some(json!({"template_id": "python-basic", "python_package_index_url": index.url(),
                        "dependencies": [{"name": "sbx-probe"}]})),
        )
        .await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("index_not_allowed")),
        "{body}"
    );
    let (_, list) = srv.call(Method::GET, "/api/v1/sessions", &srv.key, None).await;
    assert_eq!(list["total"], 0, "no session was made: {list}");
    let id = srv.create_session(&srv.key, "python-basic").await;
    for url in [index.url(), "http://169.254.169.254/latest/".to_owned()] {
        let (s, body) = srv
            .call(
                Method::POST,
                &format!("/api/v1/sessions/{id}/dependencies/install"),
                &srv.key,
                Some(json!({"dependencies": [{"name": "sbx-probe"}], "python_package_index_url": url})),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("index_not_allowed")),
            "{body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(index.connections(), 0, "the index received connections");
    let (_, session) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    assert_ne!(session["dependency_install_status"], "installing", "{session}");
}

/// Item 3: an install that writes more than `max_size_mb` runs out of space while it runs (the
/// staging filesystem is bounded), fails cleanly, and the session keeps its previous packages.
#[tokio::test]
async fn an_install_past_its_size_limit_fails_while_it_runs_and_keeps_the_old_packages() {
    let index = sandbox_e2e::pypi::TestIndex::start().await;
    index.publish("sbx-small", "1.0.0", &[], "X = 'small'\n");
    // 24 MiB that do not compress: the wheel stays that size on disk.
    let mut state = 0x9e3779b97f4a7c15u64;
    let blob: String = (0..24 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'!' + (state % 90) as u8)
        })
        .collect();
    index.publish("sbx-huge", "1.0.0", &[], &format!("DATA = '''{blob}'''\n"));
    let srv = Server::start(&[
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
        ("SANDBOX_DEPENDENCIES__MAX_SIZE_MB", "8"),
    ])
    .await;
    let id = srv
        .create_session_with(
            &srv.key,
            json!({"template_id": "python-basic", "python_package_index_url": index.url(),
                   "dependencies": [{"name": "sbx-small"}]}),
        )
        .await;
    assert_eq!(srv.settled(&id).await["dependency_install_status"], "completed");
    let path = format!("/api/v1/sessions/{id}/dependencies/install");
    let (s, body) =
        srv.call(Method::POST, &path, &srv.key, Some(json!({"dependencies": [{"name": "sbx-huge"}]}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("No space left on device"), "the limit held while pip ran: {message}");
    let r = srv.python(&id, "import sbx_small\nprint(sbx_small.X)\ntry:\n    import sbx_huge\nexcept ImportError:\n    print('no huge')").await;
    assert_eq!(r["stdout"], "small\nno huge\n", "{r}");
    let (_, session) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
    assert_eq!(
        (session["status"].as_str(), session["dependency_install_status"].as_str()),
        (Some("running"), Some("failed"))
    );
    // Nothing is left of the failed install on the host.
    let left: Vec<String> = std::fs::read_dir(srv.dir.path().join("sessions").join(&id))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("install-"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// Item 1 for packages: a package whose build plants `*.dist-info/METADATA` as a symlink to a
/// host file does not get that file read by the control plane (which records installed
/// versions from METADATA as root).
#[tokio::test]
async fn an_installer_cannot_make_the_control_plane_read_host_files() {
    let index = sandbox_e2e::pypi::TestIndex::start().await;
    let srv = Server::start(&[
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
        ("SANDBOX_DEPENDENCIES__ALLOW_SOURCE_BUILDS", "true"),
    ])
    .await;
    let (secret, marker) = plant_host_secret(srv.dir.path());
    let backend = format!(
        r#"
import os, zipfile

def _plant():
    os.makedirs('/target/leak-9.9.dist-info', exist_ok=True)
    if not os.path.lexists('/target/leak-9.9.dist-info/METADATA'):
        os.symlink({secret:?}, '/target/leak-9.9.dist-info/METADATA')

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _plant()
    name = 'sbx_evil-1.0-py3-none-any.whl'
    with zipfile.ZipFile(os.path.join(wheel_directory, name), 'w') as z:
        z.writestr('sbx_evil/__init__.py', 'X = 1\n')
        z.writestr('sbx_evil-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\nName: sbx-evil\nVersion: 1.0\n')
        z.writestr('sbx_evil-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\nTag: py3-none-any\n')
        z.writestr('sbx_evil-1.0.dist-info/RECORD', '')
    return name
"#,
        secret = secret.display().to_string()
    );
    let pyproject = "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n";
    index.publish_sdist("sbx-evil", "1.0", &[("pyproject.toml", pyproject), ("backend.py", &backend)]);
    let id = srv
        .create_session_with(
            &srv.key,
            json!({"template_id": "python-basic", "python_package_index_url": index.url(),
                   "dependencies": [{"name": "sbx-evil"}]}),
        )
        .await;
    let session = srv.settled(&id).await;
    assert_eq!(session["dependency_install_status"], "completed", "{session}");
    let names: Vec<&str> = session["installed_dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(names.contains(&"sbx-evil"), "{names:?}");
    assert!(!names.contains(&"leaked"), "the control plane read the host file: {names:?}");
    assert!(!session.to_string().contains(&marker));
}

/// Speaks HTTP to a Unix socket and prints the answer's status line, or why there was none.
const DRIVE_EXECUTOR: &str = r#"
import json, socket, sys
body = json.dumps({"execution_id": "intruder", "language": "python", "code": "print('driven')",
                   "timeout_ms": 10000, "mode": "wait"}).encode()
try:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sys.argv[1])
    s.sendall(b"POST /v1/executions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    answer = s.recv(65536).decode(errors="replace")
    print(answer.splitlines()[0] if answer else "closed without an answer")
    print("driven" in answer and "DRIVEN" or "")
except OSError as e:
    print("refused:", e)
"#;

/// Item 5: sandboxes run under a host uid no account uses, and even a process of that uid on the
/// host cannot drive a session's executor: it answers the control plane only.
#[tokio::test]
async fn a_host_process_running_as_the_sandbox_user_cannot_drive_an_executor() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let srv = Server::start(&[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    // As in a real deployment, the data directory is traversable (0755); only the socket's own
    // directory is private to the sandbox user.
    for dir in [
        srv.dir.path().to_owned(),
        srv.dir.path().join("sessions"),
        srv.dir.path().join("sessions").join(&id),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = srv.dir.path().join("sessions").join(&id).join("run");
    let uid = std::fs::metadata(&run).unwrap().uid().to_string();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "/usr/bin/python3", "-c", DRIVE_EXECUTOR])
        .arg(run.join("executor.sock"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    println!("as uid {uid}: {said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!said.contains("DRIVEN") && !said.contains(" 200 "), "a host process drove the executor: {said}");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.lines().any(|l| l.split(':').nth(2) == Some(uid.as_str())),
        "the sandbox uid {uid} belongs to a host account"
    );
    // The control plane still can.
    assert_eq!(srv.python(&id, "print('ok')").await["stdout"], "ok\n");
}

/// Bytes of the filesystem holding `dir`.
fn filesystem_bytes(dir: &std::path::Path) -> f64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs fills the struct it is given.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_blocks as f64 * st.f_frsize as f64
}

/// The host's memory as Docker reports it.
fn host_memory_bytes() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kib * 1024.0
}

fn create_body(disk: &str) -> Value {
    json!({"template_id": "python-basic", "disk": disk})
}

/// Item 4: workspace disk is admitted per key and per host like CPU and memory, so sparse
/// images cannot promise more disk than the data filesystem has, and one key cannot take it all.
#[tokio::test]
async fn disk_is_admitted_per_key_and_per_host() {
    let probe = tempfile::Builder::new().prefix("sandbox-server-e2e-").tempdir().unwrap();
    // The host may promise 3.5 GiB of workspaces in all; one key 2.5 GiB.
    let overcommit = (3.5 * (1u64 << 30) as f64 / filesystem_bytes(probe.path())).to_string();
    let srv = Server::start_in(
        probe,
        &[
            ("SANDBOX_CAPACITY__DISK_OVERCOMMIT", &overcommit),
            ("SANDBOX_CAPACITY__MAX_DISK_PER_KEY", "2560Mi"),
        ],
    )
    .await;
    let (_, other) =
        srv.call(Method::POST, "/api/v1/admin/keys", &srv.key, Some(json!({"name": "other"}))).await;
    let other = other["key"].as_str().unwrap().to_owned();
    let create = |key: &str, disk: &str| {
        let req = srv.http.post(srv.url("/api/v1/sessions")).bearer_auth(key).json(&create_body(disk));
        async move {
            let resp = req.send().await.unwrap();
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (resp.status(), retry, resp.json::<Value>().await.unwrap())
        }
    };
    let (s, _, first) = create(&srv.key, "2Gi").await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, retry, body) = create(&srv.key, "1Gi").await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")), "{body}");
    assert!(retry.is_some(), "429 says when to retry");
    // Another key still gets a session, until the host's promise is used up.
    let (s, _, mine) = create(&other, "1Gi").await;
    assert_eq!(s, StatusCode::CREATED, "{mine}");
    let (s, retry, body) = create(&other, "1Gi").await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("capacity_exhausted")),
        "{body}"
    );
    assert!(retry.is_some(), "503 says when to retry");
    // Those that run keep working.
    let id = mine["id"].as_str().unwrap();
    let (s, r) = srv
        .call(
            Method::POST,
            &format!("/api/v1/executions/sessions/{id}/execute-sync"),
            &other,
            Some(json!({"code": "print('fine')", "language": "python"})),
        )
        .await;
    assert_eq!((s, r["stdout"].as_str()), (StatusCode::OK, Some("fine\n")), "{r}");
}

/// Creates that arrive together are admitted one after another: a burst cannot pass a key's
/// quota together (each sees the ones admitted before it, recorded or not).
#[tokio::test]
async fn a_burst_of_creates_cannot_pass_a_quota_together() {
    let srv = Server::start(&[("SANDBOX_CAPACITY__MAX_DISK_PER_KEY", "3Gi")]).await;
    let creates = (0..8).map(|_| {
        let req = srv.http.post(srv.url("/api/v1/sessions")).bearer_auth(&srv.key).json(&create_body("1Gi"));
        async move { req.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(creates).await;
    let made = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((made, refused), (3, 5), "{statuses:?}");
}

/// Item 4: a package installer counts against the host's memory while it runs.
#[tokio::test]
async fn a_package_installer_counts_against_the_hosts_capacity() {
    let index = sandbox_e2e::pypi::TestIndex::start().await;
    index.publish("sbx-tiny", "1.0.0", &[], "X = 1\n");
    // Room for one 512 MiB session, not for one with a 1 GiB installer beside it.
    let overcommit = (1.2 * (1u64 << 30) as f64 / host_memory_bytes()).to_string();
    let srv = Server::start(&[
        ("SANDBOX_CAPACITY__MEMORY_OVERCOMMIT", &overcommit),
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
    ])
    .await;
    let body = json!({"template_id": "python-basic", "python_package_index_url": index.url(),
                      "dependencies": [{"name": "sbx-tiny"}]});
    let (s, refused) = srv.call(Method::POST, "/api/v1/sessions", &srv.key, Some(body)).await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("capacity_exhausted")),
        "{refused}"
    );
    let id = srv
        .create_session_with(
            &srv.key,
            json!({"template_id": "python-basic", "python_package_index_url": index.url()}),
        )
        .await;
    let (s, refused) = srv
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/dependencies/install"),
            &srv.key,
            Some(json!({"dependencies": [{"name": "sbx-tiny"}]})),
        )
        .await;
    assert_eq!(
        (s, refused["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("capacity_exhausted")),
        "{refused}"
    );
    assert_eq!(index.connections(), 0, "no installer ran");
    assert_eq!(srv.python(&id, "print('still fine')").await["stdout"], "still fine\n");
}

/// Item 4: stored results are bounded per session: the oldest go past a count or a size, so
/// printing a megabyte in a loop cannot grow the database without limit.
#[tokio::test]
async fn stored_results_are_bounded_per_session() {
    let srv = Server::start(&[
        ("SANDBOX_LIFECYCLE__KEPT_EXECUTIONS_PER_SESSION", "5"),
        ("SANDBOX_LIFECYCLE__KEPT_EXECUTION_MB_PER_SESSION", "1"),
    ])
    .await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = srv.python(&id, &format!("print({i})")).await;
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let list = || async {
        let (_, page) = srv
            .call(
                Method::GET,
                &format!("/api/v1/executions/sessions/{id}/executions?limit=100"),
                &srv.key,
                None,
            )
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    common::eventually(Duration::from_secs(10), "four small results kept", || async {
        (list().await.len() == 4).then_some(())
    })
    .await;
    for i in 4..7 {
        let r = srv.python(&id, &format!("print({i})")).await;
        ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let kept = common::eventually(Duration::from_secs(10), "the count to hold", || async {
        let kept = list().await;
        (kept.len() == 5).then_some(kept)
    })
    .await;
    assert_eq!(kept, ids[2..].iter().rev().cloned().collect::<Vec<_>>(), "the newest five, newest first");
    let (s, _) =
        srv.call(Method::GET, &format!("/api/v1/executions/{}/result", ids[0]), &srv.key, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the oldest is gone");
    // Three outputs of 400 KiB take more than 1 MiB: only the newest two stay.
    for _ in 0..3 {
        srv.python(&id, "print('x' * (400 << 10))").await;
    }
    common::eventually(Duration::from_secs(10), "the size to hold", || async {
        (list().await.len() == 2).then_some(())
    })
    .await;
}

/// Item 7: a key that is not an admin sees nothing of the host (paths, nodes, containers) or of
/// the deployment (pools, metrics, detailed health), and choosing a session id another key holds
/// neither fails nor reveals that it exists: client-chosen ids are per key.
#[tokio::test]
async fn tenants_see_neither_the_host_nor_each_others_session_names() {
    let srv = Server::start(&[]).await;
    let mut keys = Vec::new();
    for name in ["alice", "mallory"] {
        let (s, k) =
            srv.call(Method::POST, "/api/v1/admin/keys", &srv.key, Some(json!({"name": name}))).await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        keys.push(k["key"].as_str().unwrap().to_owned());
    }
    let keys: &'static [String] = Vec::leak(keys);
    let (alice, mallory): (&'static str, &'static str) = (&keys[0], &keys[1]);
    let body = json!({"template_id": "python-basic", "id": "quarterly-report"});
    let (s, a) = srv.call(Method::POST, "/api/v1/sessions", alice, Some(body.clone())).await;
    assert_eq!((s, a["id"].as_str()), (StatusCode::CREATED, Some("quarterly-report")), "{a}");
    for field in ["workspace_path", "container_id", "runtime_node", "pod_name"] {
        assert!(a[field].is_null(), "a tenant sees {field}: {a}");
    }
    let (s, m) = srv.call(Method::POST, "/api/v1/sessions", mallory, Some(body.clone())).await;
    assert_eq!(
        (s, m["id"].as_str()),
        (StatusCode::CREATED, Some("quarterly-report")),
        "the name is mallory's too: {m}"
    );
    // Each reaches its own session by that name, and only its own.
    let path = "/api/v1/executions/sessions/quarterly-report/execute-sync";
    let run = |key: &'static str, code: &str| {
        srv.call(Method::POST, path, key, Some(json!({"code": code, "language": "python"})))
    };
    run(alice, "open('owner.txt', 'w').write('alice')").await;
    let (_, r) = run(mallory, "import os\nprint(os.path.exists('owner.txt'))").await;
    assert_eq!(r["stdout"], "False\n", "mallory's session is not alice's: {r}");
    assert_eq!(r["session_id"], "quarterly-report");
    let (_, r) = run(alice, "print(open('owner.txt').read())").await;
    assert_eq!(r["stdout"], "alice\n");
    // Creating the same name again is the caller's own conflict.
    let (s, again) = srv.call(Method::POST, "/api/v1/sessions", mallory, Some(body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    // The admin sees two sessions under ids of their own, and where they run.
    let (_, all) = srv.call(Method::GET, "/api/v1/sessions", &srv.key, None).await;
    let ids: Vec<&str> = all["items"].as_array().unwrap().iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| *id != "quarterly-report"), "{ids:?}");
    assert!(all["items"][0]["container_id"].is_string(), "admins see where sessions run");
    // The deployment's details are for admins.
    for path in ["/api/v1/pools", "/metrics", "/api/v1/health/detailed"] {
        let (s, body) = srv.call(Method::GET, path, alice, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {body}");
        let (s, _) = srv.call(Method::GET, path, &srv.key, None).await;
        assert_eq!(s, StatusCode::OK, "{path} for the admin");
    }
}

/// Item 7: an upload without a length (chunked), or with a huge form field other than `file`,
/// is bounded like one that declares its length: refused with 413, and not read to its end.
#[tokio::test]
async fn uploads_are_bounded_whatever_their_framing() {
    use futures_util::StreamExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let srv = Server::start(&[("SANDBOX_LIMITS__MAX_UPLOAD_MB", "1")]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let total: u64 = 256 << 20;
    for (what, filler_field) in
        [("a chunked raw body", false), ("a chunked form with a huge extra field", true)]
    {
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
        let head =
            bytes::Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n");
        let chunks = (0..total / chunk.len() as u64).map(move |_| chunk.clone());
        let stream =
            futures_util::stream::iter(std::iter::once(head).filter(move |_| filler_field).chain(chunks))
                .map(move |c: bytes::Bytes| {
                    counter.fetch_add(c.len() as u64, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(c)
                });
        let mut req = srv
            .http
            .post(srv.url(&format!("/api/v1/sessions/{id}/files/upload?path=big.bin")))
            .bearer_auth(&srv.key)
            .body(reqwest::Body::wrap_stream(stream));
        if filler_field {
            req = req.header("content-type", "multipart/form-data; boundary=XyZ");
        }
        let status =
            match tokio::time::timeout(Duration::from_secs(120), req.send()).await.expect("an answer") {
                Ok(resp) => resp.status(),
                // The server may close the connection after answering, while the client still sends.
                Err(e) => e.status().unwrap_or(StatusCode::PAYLOAD_TOO_LARGE),
            };
        let read = sent.load(Ordering::Relaxed);
        println!("{what}: {status}, {} MiB sent", read >> 20);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}");
        assert!(read < 64 << 20, "{what}: the server read {} MiB of a 1 MiB limit", read >> 20);
    }
    // The executor may still be removing the refused upload's temporary file when the answer
    // comes (the server stops forwarding at once): nothing stays.
    common::eventually(Duration::from_secs(10), "nothing written", || async {
        let (_, listing) =
            srv.call(Method::GET, &format!("/api/v1/sessions/{id}/files"), &srv.key, None).await;
        (listing["total"] == 0).then_some(())
    })
    .await;
}
