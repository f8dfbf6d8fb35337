//! Workspaces on S3-compatible storage, end to end: the real server binary in `s3` mode against
//! a real S3 server (s3s-fs, in this test process on loopback) and real sandboxes.

mod common;

use common::{Server, eventually};
use reqwest::{Method, StatusCode};
use sandbox_core::WorkspacePath;
use sandbox_e2e::s3::{ACCESS_KEY, BUCKET, SECRET_KEY, TestS3};
use sandbox_storage::WorkspaceBucket;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

async fn s3_server(s3: &TestS3, extra: &[(&str, &str)]) -> Server {
    let endpoint = s3.endpoint();
    let mut env = vec![
        ("SANDBOX_STORAGE__MODE", "s3"),
        ("SANDBOX_STORAGE__S3__ENDPOINT", endpoint.as_str()),
        ("SANDBOX_STORAGE__S3__BUCKET", BUCKET),
        ("SANDBOX_STORAGE__S3__ACCESS_KEY_ID", ACCESS_KEY),
        ("SANDBOX_STORAGE__S3__SECRET_ACCESS_KEY", SECRET_KEY),
        ("SANDBOX_LIFECYCLE__RECONCILE_INTERVAL_SEC", "1"),
    ];
    env.extend_from_slice(extra);
    Server::start(&env).await
}

fn p(s: &str) -> WorkspacePath {
    WorkspacePath::parse(s).unwrap()
}

async fn stored(bucket: &WorkspaceBucket, session: &str) -> Vec<String> {
    bucket.list(session).await.unwrap().into_iter().map(|f| f.path.to_string()).collect()
}

#[tokio::test]
async fn finished_executions_are_in_the_bucket_and_survive_a_lost_sandbox() {
    let s3 = TestS3::start().await;
    let bucket = WorkspaceBucket::connect(s3.settings()).await.unwrap();
    let srv = s3_server(&s3, &[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let r = srv
        .python(&id, "import os\nos.makedirs('out', exist_ok=True)\nopen('out/a.txt','w').write('A')\nopen('gone.txt','w').write('x')")
        .await;
    assert_eq!(r["status"], "completed");
    // Reported finished means stored.
    assert_eq!(stored(&bucket, &id).await, ["gone.txt", "out/a.txt"]);
    srv.python(&id, "import os\nos.remove('gone.txt')\nopen('out/a.txt','a').write('B')").await;
    assert_eq!(stored(&bucket, &id).await, ["out/a.txt"]);
    let (_, content) = bucket.read(&id, &p("out/a.txt")).await.unwrap();
    let bytes = futures_util::TryStreamExt::try_fold(content, Vec::new(), |mut all, chunk| async move {
        all.extend_from_slice(&chunk);
        Ok(all)
    })
    .await
    .unwrap();
    assert_eq!(bytes, b"AB");

    // The node is lost: the container dies and the local workspace with it.
    common::lose_sandbox(&id);
    let workspace = srv.dir.path().join("sessions").join(&id).join("workspace");
    for entry in std::fs::read_dir(&workspace).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }.unwrap();
    }
    let text = eventually(Duration::from_secs(90), "a new sandbox with the stored files", || async {
        let (s, r, _) = srv
            .execute(&srv.key, &id, json!({"code": "print(open('out/a.txt').read())", "language": "python"}))
            .await;
        (s == StatusCode::OK && r["status"] == "completed").then(|| r["stdout"].as_str().unwrap().to_owned())
    })
    .await;
    assert_eq!(text, "AB\n");
}

#[tokio::test]
async fn files_api_works_from_the_bucket_while_the_sandbox_is_gone_and_resumes() {
    let s3 = TestS3::start().await;
    let srv = s3_server(&s3, &[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let big: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(big.clone()).file_name("big.bin"));
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/sessions/{id}/files/upload?path=data/")))
        .bearer_auth(&srv.key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let (s, _) = srv.call(Method::POST, &format!("/api/v1/sessions/{id}/terminate"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK);

    // Terminated: listing and downloading come from the bucket.
    let (s, listing) = srv.call(Method::GET, &format!("/api/v1/sessions/{id}/files"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK, "{listing}");
    let files: Vec<&Value> = listing["files"].as_array().unwrap().iter().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        (files[0]["path"].as_str(), files[0]["size"].as_u64()),
        (Some("data/big.bin"), Some(20 << 20))
    );
    let got = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{id}/files/data/big.bin")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().await.unwrap().as_ref() == big.as_slice(), "byte-exact from the bucket");
    // Uploads land in the bucket too.
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/sessions/{id}/files/upload?path=notes.txt")))
        .bearer_auth(&srv.key)
        .body("later")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A new session resumes the workspace.
    let (s, resumed) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            &srv.key,
            Some(json!({"template_id": "python-basic", "source_session_id": id})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{resumed}");
    let new_id = resumed["id"].as_str().unwrap();
    let r = srv
        .python(new_id, "import os\nprint(os.path.getsize('data/big.bin'), open('notes.txt').read())")
        .await;
    assert_eq!(r["stdout"], format!("{} later\n", 20u32 << 20));
    let (s, body) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            &srv.key,
            Some(json!({"template_id": "python-basic", "source_session_id": "sess_nope"})),
        )
        .await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")));

    // Deleting a session deletes its objects, and only its.
    let bucket = WorkspaceBucket::connect(s3.settings()).await.unwrap();
    let resp = srv
        .http
        .delete(srv.url(&format!("/api/v1/sessions/{id}")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(stored(&bucket, &id).await.is_empty());
    assert_eq!(stored(&bucket, new_id).await, ["data/big.bin", "notes.txt"]);
}

#[tokio::test]
async fn concurrent_executions_writing_different_files_all_land() {
    let s3 = TestS3::start().await;
    let srv = s3_server(&s3, &[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let runs = (0..6).map(|i| {
        srv.python(&id, format!("import time\ntime.sleep(0.5)\nopen('f{i}.txt','w').write('{i}')").leak())
    });
    for r in futures_util::future::join_all(runs).await {
        assert_eq!(r["status"], "completed", "{r}");
    }
    let bucket = WorkspaceBucket::connect(s3.settings()).await.unwrap();
    assert_eq!(stored(&bucket, &id).await, ["f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt", "f5.txt"]);
}

#[tokio::test]
async fn a_store_that_cannot_be_used_stops_the_server_with_a_clear_error() {
    let s3 = TestS3::start().await;
    let endpoint = s3.endpoint();
    for (what, env, expect) in [
        (
            "wrong credentials",
            vec![
                ("SANDBOX_STORAGE__S3__ENDPOINT", endpoint.as_str()),
                ("SANDBOX_STORAGE__S3__SECRET_ACCESS_KEY", "wrong-secret"),
            ],
            "storage",
        ),
        (
            "unreachable endpoint",
            vec![
                ("SANDBOX_STORAGE__S3__ENDPOINT", "http://127.0.0.1:1"),
                ("SANDBOX_STORAGE__S3__SECRET_ACCESS_KEY", SECRET_KEY),
            ],
            "127.0.0.1:1",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sandbox-server"))
            .arg("serve")
            .env("SANDBOX_DATA_DIR", dir.path())
            .env("SANDBOX_LISTEN", "127.0.0.1:0")
            .env("SANDBOX_API_KEY", "test-admin-key-0123456789")
            .env("SANDBOX_STORAGE__MODE", "s3")
            .env("SANDBOX_STORAGE__S3__BUCKET", BUCKET)
            .env("SANDBOX_STORAGE__S3__ACCESS_KEY_ID", ACCESS_KEY)
            .env("SANDBOX_STORAGE__S3__REQUEST_TIMEOUT_SECS", "3")
            .envs(env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the server started");
        assert!(stderr.contains("workspace storage") && stderr.contains(expect), "{what}: {stderr}");
        assert!(!stderr.contains("wrong-secret"), "the secret is never printed");
    }
}

#[tokio::test]
async fn large_downloads_of_a_stopped_session_redirect_to_the_public_endpoint_when_configured() {
    let s3 = TestS3::start().await;
    let public = format!("http://localhost:{}", s3.port());
    let srv = s3_server(
        &s3,
        &[
            ("SANDBOX_STORAGE__S3__PUBLIC_ENDPOINT", public.as_str()),
            ("SANDBOX_STORAGE__PRESIGN_MIN_MB", "1"),
        ],
    )
    .await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    srv.python(&id, "open('big.bin','wb').write(bytes(range(256))*8192)\nopen('small.txt','w').write('s')")
        .await;
    // While the sandbox runs, the server streams the file itself.
    let running = srv
        .http
        .get(srv.url(&format!("/api/v1/sessions/{id}/files/big.bin")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!((running.status(), running.bytes().await.unwrap().len()), (StatusCode::OK, 2 << 20));
    let (s, _) = srv.call(Method::POST, &format!("/api/v1/sessions/{id}/terminate"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK);

    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let resp = no_redirects
        .get(srv.url(&format!("/api/v1/sessions/{id}/files/big.bin")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = resp.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{public}/{BUCKET}/")) && location.contains("X-Amz-Signature="),
        "{location}"
    );
    // The URL works without the API key, byte-exact.
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    let expected: Vec<u8> = (0..8192).flat_map(|_| 0..=255u8).collect();
    assert!(direct.bytes().await.unwrap().as_ref() == expected.as_slice());
    // Small files are still served directly.
    let small = no_redirects
        .get(srv.url(&format!("/api/v1/sessions/{id}/files/small.txt")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!((small.status(), small.text().await.unwrap()), (StatusCode::OK, "s".to_owned()));
}

#[tokio::test]
async fn a_store_lost_while_serving_fails_each_call_clearly_and_nothing_pretends_to_be_saved() {
    let mut s3 = TestS3::start().await;
    let srv = s3_server(&s3, &[("SANDBOX_STORAGE__S3__REQUEST_TIMEOUT_SECS", "2")]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    let stopped = srv.create_session(&srv.key, "python-basic").await;
    let (s, _) =
        srv.call(Method::POST, &format!("/api/v1/sessions/{stopped}/terminate"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK);
    s3.stop().await;

    // An execution that changed a file is not reported completed: its file is not durable.
    let r = srv.python(&id, "open('x.txt','w').write('x')").await;
    assert_eq!(r["status"], "crashed", "{r}");
    assert!(r["error_message"].as_str().unwrap().contains("could not all be saved to storage"), "{r}");
    // One that changed nothing needs nothing from the store.
    let r = srv.python(&id, "print(1)").await;
    assert_eq!(r["status"], "completed", "{r}");
    // An upload is refused rather than acknowledged.
    let resp = srv
        .http
        .post(srv.url(&format!("/api/v1/sessions/{id}/files/upload?path=u.txt")))
        .bearer_auth(&srv.key)
        .body("u")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "storage_unavailable");
    // The files of a stopped session cannot be served: a clear 503, not an empty listing.
    let (s, body) = srv.call(Method::GET, &format!("/api/v1/sessions/{stopped}/files"), &srv.key, None).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("storage_unavailable")),
        "{body}"
    );
    // Detailed health says which component is down.
    let (_, health) = srv.call(Method::GET, "/api/v1/health/detailed", &srv.key, None).await;
    assert_eq!(health["storage"]["healthy"], false, "{health}");
    assert_ne!(health["status"], "healthy", "{health}");
}

/// A path too long for any API path (or object key) does not silently stop the write-back: the
/// other changes are saved, and the execution says what could not be.
#[tokio::test]
async fn a_path_too_long_to_store_fails_the_save_visibly_and_the_rest_is_saved() {
    let s3 = TestS3::start().await;
    let bucket = WorkspaceBucket::connect(s3.settings()).await.unwrap();
    let srv = s3_server(&s3, &[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    // Deeper than PATH_MAX, one directory at a time.
    let code = "import os\nos.mkdir('a')\nos.chdir('a')\nfor _ in range(18):\n    os.mkdir('d' * 250)\n    os.chdir('d' * 250)\nopen('deep.txt', 'w').write('deep')\nos.chdir('/workspace')\nos.mkdir('b')\nopen('b/later.txt', 'w').write('b')\nopen('z.txt', 'w').write('z')";
    let r = srv.python(&id, code).await;
    assert_eq!(r["status"], "crashed", "{r}");
    let message = r["error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not all be saved") && message.contains("longer than 4096 bytes"),
        "{message}"
    );
    assert_eq!(stored(&bucket, &id).await, ["b/later.txt", "z.txt"], "what could be saved was");
}

/// A move in the running sandbox is followed by the bucket; a stopped session lists by depth
/// from the bucket, and the operations that need the sandbox say so.
#[tokio::test]
async fn moves_reach_the_bucket_and_depth_lists_from_it() {
    let s3 = TestS3::start().await;
    let srv = s3_server(&s3, &[]).await;
    let id = srv.create_session(&srv.key, "python-basic").await;
    srv.python(
        &id,
        "import os\nos.makedirs('d/sub')\nopen('d/a.txt','w').write('a')\nopen('d/sub/b.txt','w').write('b')",
    )
    .await;
    let (s, moved) = srv
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{id}/files-move"),
            &srv.key,
            Some(json!({"source": "d", "destination": "e/d2"})),
        )
        .await;
    assert_eq!((s, moved["type"].as_str()), (StatusCode::OK, Some("directory")), "{moved}");
    let (s, _) = srv.call(Method::POST, &format!("/api/v1/sessions/{id}/terminate"), &srv.key, None).await;
    assert_eq!(s, StatusCode::OK);

    let files = format!("/api/v1/sessions/{id}/files");
    let paths = |v: &Value| -> Vec<String> {
        v["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect()
    };
    let (s, all) = srv.call(Method::GET, &files, &srv.key, None).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(paths(&all), ["e/d2/a.txt", "e/d2/sub/b.txt"]);
    assert!(all["files"][0].get("owner").is_none(), "the bucket knows no owners: {all}");
    let (_, shallow) = srv.call(Method::GET, &format!("{files}?path=e&depth=2"), &srv.key, None).await;
    assert_eq!(paths(&shallow), ["e/d2/a.txt"]);
    let (s, b) =
        srv.call(Method::GET, &format!("/api/v1/sessions/{id}/files-stat?path=e"), &srv.key, None).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("session_not_running")), "{b}");
}
