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
    // Installers could reach the host's loopback, where the "internal" service listens.
    let srv = Server::start(&[("SANDBOX_DEPENDENCIES__NETWORK", "host")]).await;
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
        ("SANDBOX_DEPENDENCIES__NETWORK", "host"),
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
        ("SANDBOX_DEPENDENCIES__NETWORK", "host"),
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
    let (_, session) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}"), &srv.key, None).await;
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
