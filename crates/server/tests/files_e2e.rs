//! The filesystem routes beside the files API, through the real server against a real sandbox:
//! listing by depth, stat, mkdir, move, remove, polling watchers and the watch stream, another
//! key refused, and a symlink to `/` leading nowhere.

mod common;

use common::Server;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn get(srv: &Server, path: &str) -> (StatusCode, Value) {
    srv.call(Method::GET, path, &srv.key, None).await
}

async fn post(srv: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    srv.call(Method::POST, path, &srv.key, Some(body)).await
}

fn paths(listing: &Value) -> Vec<&str> {
    listing["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn stat_list_mkdir_move_and_remove() {
    let srv = Server::start(&[]).await;
    let session = srv.create_session(&srv.key, "python-basic").await;
    let base = format!("/api/v1/sessions/{session}");
    srv.python(
        &session,
        "import os\nos.makedirs('a/b/c')\nopen('a/top.txt','w').write('hello')\nopen('a/b/c/deep.txt','w').write('x')\n\
         os.chmod('a/top.txt', 0o640)\nos.symlink('/', 'root')",
    )
    .await;

    // Depth listing; without depth the whole tree, as before.
    let (s, one) = get(&srv, &format!("{base}/files?path=a&depth=1")).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(paths(&one), ["a/b", "a/top.txt"]);
    assert_eq!(one["files"][1]["owner"], "sandbox", "{one}");
    let (_, two) = get(&srv, &format!("{base}/files?path=a&depth=2")).await;
    assert_eq!(paths(&two), ["a/b", "a/b/c", "a/top.txt"]);
    let (_, all) = get(&srv, &format!("{base}/files?path=a")).await;
    assert_eq!(paths(&all), ["a/b", "a/b/c", "a/b/c/deep.txt", "a/top.txt"]);
    // Pages of the listing: `has_more` says when to ask again from `offset` + `limit`.
    // Together the pages hold every entry once, each page in path order.
    let (_, first) = get(&srv, &format!("{base}/files?path=a&limit=3")).await;
    assert_eq!(
        (first["has_more"].as_bool(), first["truncated"].as_bool()),
        (Some(true), Some(true)),
        "{first}"
    );
    let (_, rest) = get(&srv, &format!("{base}/files?path=a&limit=3&offset=3")).await;
    assert_eq!((rest["has_more"].as_bool(), rest["offset"].as_u64()), (Some(false), Some(3)), "{rest}");
    let (first, rest) = (paths(&first), paths(&rest));
    assert!(first.is_sorted() && rest.is_sorted(), "{first:?} {rest:?}");
    let mut together = [first, rest].concat();
    together.sort();
    assert_eq!(together, paths(&all));
    let (s, bad) = get(&srv, &format!("{base}/files?path=a&depth=-1")).await;
    assert_eq!(
        (s, bad["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_error")),
        "{bad}"
    );
    let (s, b) = get(&srv, &format!("{base}/files?path=a/top.txt&depth=1")).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("not_a_directory")), "{b}");

    // Stat.
    let (s, st) = get(&srv, &format!("{base}/files-stat?path=a/top.txt")).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    assert_eq!((st["type"].as_str(), st["size"].as_u64()), (Some("file"), Some(5)));
    assert_eq!((st["mode"].as_u64(), st["permissions"].as_str()), (Some(0o640), Some("rw-r-----")));
    assert_eq!(st["owner"], "sandbox");
    assert!(st["group"].is_string() && st["modified_at"].is_string(), "{st}");
    let (_, link) = get(&srv, &format!("{base}/files-stat?path=root")).await;
    assert_eq!((link["type"].as_str(), link["symlink_target"].as_str()), (Some("symlink"), Some("/")));
    let (s, b) = get(&srv, &format!("{base}/files-stat?path=root/etc/passwd")).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")), "{b}");
    let (s, b) = get(&srv, &format!("{base}/files-stat?path=missing")).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("file_not_found")), "{b}");

    // Mkdir twice: made, then existing; a file in the way.
    let (s, made) = post(&srv, &format!("{base}/directories"), json!({"path": "new/x"})).await;
    assert_eq!(
        (s, made["created"].as_bool(), made["type"].as_str()),
        (StatusCode::CREATED, Some(true), Some("directory"))
    );
    let (s, again) = post(&srv, &format!("{base}/directories"), json!({"path": "new/x"})).await;
    assert_eq!((s, again["created"].as_bool()), (StatusCode::OK, Some(false)), "{again}");
    let (s, b) = post(&srv, &format!("{base}/directories"), json!({"path": "a/top.txt"})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("not_a_directory")), "{b}");
    let (s, b) = post(&srv, &format!("{base}/directories"), json!({"path": "../up"})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")), "{b}");

    // Move.
    let (s, moved) = post(
        &srv,
        &format!("{base}/files-move"),
        json!({"source": "a/top.txt", "destination": "new/y/top.txt"}),
    )
    .await;
    assert_eq!(
        (s, moved["path"].as_str(), moved["size"].as_u64()),
        (StatusCode::OK, Some("new/y/top.txt"), Some(5)),
        "{moved}"
    );
    let r = srv.python(&session, "print(open('new/y/top.txt').read())").await;
    assert_eq!(r["stdout"], "hello\n");
    let (s, b) =
        post(&srv, &format!("{base}/files-move"), json!({"source": "a/b", "destination": "new"})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::CONFLICT, Some("already_exists")), "{b}");
    let (s, b) = post(
        &srv,
        &format!("{base}/files-move"),
        json!({"source": "root/etc/passwd", "destination": "stolen"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")), "{b}");
    let (s, b) =
        post(&srv, &format!("{base}/files-move"), json!({"source": "nope", "destination": "x"})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("file_not_found")), "{b}");

    // Remove, recursively.
    let (s, _) = srv.call(Method::DELETE, &format!("{base}/files/a?recursive=true"), &srv.key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = get(&srv, &format!("{base}/files-stat?path=a")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another key's session is refused on every new route.
    let (_, other) = post(&srv, "/api/v1/admin/keys", json!({"name": "other"})).await;
    let other = other["key"].as_str().unwrap().to_owned();
    for (method, path, body) in [
        (Method::GET, format!("{base}/files-stat?path=new"), None),
        (Method::GET, format!("{base}/files?path=&depth=1"), None),
        (Method::POST, format!("{base}/directories"), Some(json!({"path": "z"}))),
        (Method::POST, format!("{base}/files-move"), Some(json!({"source": "new", "destination": "z"}))),
        (Method::POST, format!("{base}/watchers"), Some(json!({"path": ""}))),
        (Method::GET, format!("{base}/files-watch?path="), None),
    ] {
        let (s, b) = srv.call(method, &path, &other, body).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("session_not_found")),
            "{path}: {b}"
        );
    }
}

#[tokio::test]
async fn watchers_and_the_watch_stream_see_an_executions_changes() {
    let srv = Server::start(&[]).await;
    let session = srv.create_session(&srv.key, "python-basic").await;
    let base = format!("/api/v1/sessions/{session}");
    srv.python(&session, "import os\nos.makedirs('w')\nos.symlink('/', 'root')").await;

    let (s, b) = post(&srv, &format!("{base}/watchers"), json!({"path": "root", "recursive": true})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")), "{b}");
    let (s, b) = post(&srv, &format!("{base}/watchers"), json!({"path": "missing"})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("file_not_found")), "{b}");

    let (s, w) = post(&srv, &format!("{base}/watchers"), json!({"path": "w", "recursive": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let id = w["watcher_id"].as_str().unwrap().to_owned();

    // The stream: `start` comes before anything is done.
    let resp = srv
        .http
        .get(srv.url(&format!("{base}/files-watch?path=w&recursive=true")))
        .bearer_auth(&srv.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: start") {
        let chunk =
            tokio::time::timeout(Duration::from_secs(20), body.next()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    srv.python(
        &session,
        "import os\nopen('w/a.txt','w').write('1')\nos.makedirs('w/sub')\nimport time\ntime.sleep(0.3)\n\
         open('w/sub/b.txt','w').write('2')\nos.rename('w/a.txt','w/sub/c.txt')\nos.remove('w/sub/b.txt')",
    )
    .await;
    let want = [
        ("create", "a.txt"),
        ("write", "a.txt"),
        ("create", "sub"),
        ("create", "sub/b.txt"),
        ("rename", "a.txt"),
        ("create", "sub/c.txt"),
        ("remove", "sub/b.txt"),
    ];
    let in_order = |seen: &[(String, String)]| {
        let mut it = seen.iter();
        want.iter().all(|(k, n)| it.any(|(sk, sn)| sk == k && sn == n))
    };
    // Polling.
    let mut polled: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !in_order(&polled) {
        assert!(tokio::time::Instant::now() < deadline, "the watcher saw {polled:?}");
        let (s, b) = get(&srv, &format!("{base}/watchers/{id}/events")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for e in b["events"].as_array().unwrap() {
            polled
                .push((e["type"].as_str().unwrap().to_owned(), e["name"].as_str().unwrap_or("").to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The stream saw the same.
    let mut streamed: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !in_order(&streamed) {
        let chunk =
            tokio::time::timeout_at(deadline, body.next()).await.expect("stream events").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        streamed = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|e| e["name"].is_string())
            .map(|e| (e["type"].as_str().unwrap().to_owned(), e["name"].as_str().unwrap().to_owned()))
            .collect();
    }
    drop(body);

    // Another key cannot poll or stop it.
    let (_, other) = post(&srv, "/api/v1/admin/keys", json!({"name": "other"})).await;
    let other = other["key"].as_str().unwrap().to_owned();
    let (s, _) = srv.call(Method::GET, &format!("{base}/watchers/{id}/events"), &other, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = srv.call(Method::DELETE, &format!("{base}/watchers/{id}"), &other, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Stopped, it is gone.
    let (s, _) = srv.call(Method::DELETE, &format!("{base}/watchers/{id}"), &srv.key, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, b) = get(&srv, &format!("{base}/watchers/{id}/events")).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("watcher_not_found")), "{b}");
    // An id no URI could carry as it is (the server used to drop the connection on it).
    for odd in ["%20", "a%2Fb", "%C3%A9%3F"] {
        let (s, b) = get(&srv, &format!("{base}/watchers/{odd}/events")).await;
        assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("watcher_not_found")), "{odd}: {b}");
        let (s, _) = srv.call(Method::DELETE, &format!("{base}/watchers/{odd}"), &srv.key, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{odd}");
    }
}
