//! The executor's filesystem operations (list with depth, stat, mkdir, move, remove, watches)
//! inside a real, hardened sandbox container, with links planted by code run in the sandbox.

use futures_util::StreamExt;
use sandbox_core::{ExecutionStatus, Language, WorkspacePath};
use sandbox_e2e::TestSandbox;
use sandbox_executor_client::{ClientError, WatchStream};
use sandbox_protocol::{ErrorCode, FileKind, WatchEvent, WatchEventKind};
use std::time::{Duration, Instant};

fn p(s: &str) -> WorkspacePath {
    WorkspacePath::parse(s).unwrap()
}

fn code(e: ClientError) -> ErrorCode {
    e.api_error().unwrap_or_else(|| panic!("not an API error: {e}")).code
}

async fn run(sb: &TestSandbox, code: &str) {
    let r = sb.executor.execute(&sandbox_e2e::exec_request(Language::Python, code, 20)).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
}

fn change(name: &str, kind: WatchEventKind) -> WatchEvent {
    WatchEvent::Change { name: name.into(), kind }
}

/// Whether `want` all occur in `seen`, in order.
fn in_order(seen: &[WatchEvent], want: &[WatchEvent]) -> bool {
    let mut it = seen.iter();
    want.iter().all(|w| it.any(|s| s == w))
}

/// Reads a watch stream until `want` have been seen in order (or fails after 20 seconds).
async fn stream_until(events: &mut WatchStream, want: &[WatchEvent]) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !in_order(&seen, want) {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(e)) => seen.push(e.unwrap()),
            other => panic!("watch ended or stalled ({other:?}); wanted {want:?}, saw {seen:?}"),
        }
    }
    seen
}

/// Polls a watcher until `want` have been seen in order (or fails after 20 seconds).
async fn poll_until(sb: &TestSandbox, id: &str, want: &[WatchEvent]) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !in_order(&seen, want) {
        assert!(Instant::now() < deadline, "wanted {want:?}, saw {seen:?}");
        seen.extend(sb.executor.watcher_events(id).await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test]
async fn list_stat_mkdir_move_remove_stay_in_the_workspace() {
    let sb = TestSandbox::start("python-basic").await;
    run(
        &sb,
        "import os\nos.makedirs('a/b/c')\nopen('a/top.txt','w').write('12345')\nopen('a/b/mid.txt','w').write('x')\n\
         open('a/b/c/deep.txt','w').write('x')\nos.chmod('a/top.txt', 0o640)\nos.symlink('/', 'root')\n\
         os.symlink('top.txt', 'a/link')",
    )
    .await;

    // Depth: 0 and 1 are the directory's own entries, 2 one level more.
    let names =
        |l: sandbox_protocol::FileList| l.entries.into_iter().map(|e| e.path.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(sb.executor.list_dir(&p("a"), 0, 0, None).await.unwrap()),
        ["a/b", "a/link", "a/top.txt"]
    );
    assert_eq!(
        names(sb.executor.list_dir(&p("a"), 1, 0, None).await.unwrap()),
        ["a/b", "a/link", "a/top.txt"]
    );
    assert_eq!(
        names(sb.executor.list_dir(&p("a"), 2, 0, None).await.unwrap()),
        ["a/b", "a/b/c", "a/b/mid.txt", "a/link", "a/top.txt"]
    );
    assert_eq!(names(sb.executor.list_dir(&p("a"), 10, 0, None).await.unwrap()).len(), 6);
    assert!(sb.executor.list_dir(&p("a"), 10, 0, Some(2)).await.unwrap().truncated);
    // Pages of 4: together every entry once, each page sorted.
    let first = sb.executor.list_dir(&p("a"), 10, 0, Some(4)).await.unwrap();
    let rest = sb.executor.list_dir(&p("a"), 10, 4, Some(4)).await.unwrap();
    assert_eq!((first.truncated, rest.truncated, rest.offset), (true, false, 4));
    let (first, rest) = (names(first), names(rest));
    assert!(first.is_sorted() && rest.is_sorted() && rest.len() == 2, "{first:?} {rest:?}");
    let mut together = [first, rest].concat();
    together.sort();
    assert_eq!(together, names(sb.executor.list_dir(&p("a"), 10, 0, None).await.unwrap()));
    // The recursive listing still works as before.
    assert_eq!(names(sb.executor.list_files(&p("a"), true, None).await.unwrap()).len(), 6);
    assert_eq!(code(sb.executor.list_dir(&p("nope"), 1, 0, None).await.unwrap_err()), ErrorCode::NotFound);
    assert_eq!(
        code(sb.executor.list_dir(&p("a/top.txt"), 1, 0, None).await.unwrap_err()),
        ErrorCode::NotADirectory
    );

    // Stat: mode, owner, group, symlink targets; a link is described, not followed.
    let top = sb.executor.stat(&p("a/top.txt")).await.unwrap();
    assert_eq!((top.kind, top.size, top.mode), (FileKind::File, 5, 0o640));
    assert_eq!((top.uid, top.owner.as_str()), (sandbox_protocol::DEFAULT_SANDBOX_UID, "sandbox"), "{top:?}");
    assert!(!top.group.is_empty());
    let root = sb.executor.stat(&p("root")).await.unwrap();
    assert_eq!((root.kind, root.symlink_target.as_deref()), (FileKind::Symlink, Some("/")));
    let link = sb.executor.stat(&p("a/link")).await.unwrap();
    assert_eq!(link.symlink_target.as_deref(), Some("top.txt"));
    let listed = sb.executor.list_dir(&p("a"), 1, 0, None).await.unwrap();
    assert_eq!(listed.entries[1].symlink_target.as_deref(), Some("top.txt"));
    // Nothing reaches through the link to `/`.
    for via in ["root/etc", "root/etc/passwd"] {
        assert_eq!(code(sb.executor.stat(&p(via)).await.unwrap_err()), ErrorCode::InvalidPath, "{via}");
    }
    assert_eq!(code(sb.executor.list_dir(&p("root"), 1, 0, None).await.unwrap_err()), ErrorCode::InvalidPath);

    // Mkdir: made, then existing; a file in the way is refused.
    let made = sb.executor.mkdir(&p("new/x/y")).await.unwrap();
    assert!(made.created);
    assert_eq!(made.entry.kind, FileKind::Directory);
    assert!(!sb.executor.mkdir(&p("new/x/y")).await.unwrap().created);
    assert!(!sb.executor.mkdir(&p("new")).await.unwrap().created);
    assert_eq!(code(sb.executor.mkdir(&p("a/top.txt")).await.unwrap_err()), ErrorCode::NotADirectory);
    assert_eq!(code(sb.executor.mkdir(&p("root/tmp/evil")).await.unwrap_err()), ErrorCode::InvalidPath);

    // Move: parents made, files replace files, directories are never replaced.
    let moved = sb.executor.rename(&p("a/top.txt"), &p("moved/deep/top.txt")).await.unwrap();
    assert_eq!((moved.path.as_str(), moved.size), ("moved/deep/top.txt", 5));
    assert_eq!(code(sb.executor.stat(&p("a/top.txt")).await.unwrap_err()), ErrorCode::NotFound);
    sb.executor.rename(&p("a/b/mid.txt"), &p("moved/deep/top.txt")).await.unwrap();
    assert_eq!(sb.executor.stat(&p("moved/deep/top.txt")).await.unwrap().size, 1);
    assert_eq!(
        code(sb.executor.rename(&p("a/b/c/deep.txt"), &p("new")).await.unwrap_err()),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(sb.executor.rename(&p("a/b"), &p("moved/deep/top.txt")).await.unwrap_err()),
        ErrorCode::AlreadyExists
    );
    assert_eq!(
        code(sb.executor.rename(&p("a"), &p("a/b/inside")).await.unwrap_err()),
        ErrorCode::InvalidPath
    );
    assert_eq!(code(sb.executor.rename(&p("missing"), &p("x")).await.unwrap_err()), ErrorCode::NotFound);
    // A directory moves whole; a symlink moves as a link.
    sb.executor.rename(&p("a/b"), &p("b2")).await.unwrap();
    assert_eq!(sb.executor.stat(&p("b2/c/deep.txt")).await.unwrap().kind, FileKind::File);
    let rel = sb.executor.rename(&p("root"), &p("links/root")).await.unwrap();
    assert_eq!((rel.kind, rel.symlink_target.as_deref()), (FileKind::Symlink, Some("/")));
    // Neither end may go through the link to `/`.
    assert_eq!(
        code(sb.executor.rename(&p("links/root/etc/passwd"), &p("stolen")).await.unwrap_err()),
        ErrorCode::InvalidPath
    );
    assert_eq!(
        code(sb.executor.rename(&p("b2"), &p("links/root/tmp/b2")).await.unwrap_err()),
        ErrorCode::InvalidPath
    );
    assert_eq!(
        code(sb.executor.rename(&p("links/root/tmp"), &p("tmp")).await.unwrap_err()),
        ErrorCode::InvalidPath
    );

    // Remove: recursive; a missing path is not an error; a link is removed, not followed.
    assert!(sb.executor.remove_all(&p("b2")).await.unwrap());
    assert!(!sb.executor.remove_all(&p("b2")).await.unwrap());
    assert!(!sb.executor.remove_all(&p("no/such/thing")).await.unwrap());
    assert!(sb.executor.remove_all(&p("links")).await.unwrap());
    run(&sb, "import os\nassert os.path.exists('/etc/passwd') and not os.path.exists('links')").await;
}

#[tokio::test]
async fn watches_see_an_executions_changes_and_stay_inside() {
    use WatchEventKind::*;
    let sb = TestSandbox::start("python-basic").await;
    run(&sb, "import os\nos.makedirs('w/old')\nos.symlink('/', 'root')\nopen('f','w').write('x')").await;
    // Refused: outside through a link, missing, a file.
    for (path, want) in [
        ("root", ErrorCode::InvalidPath),
        ("root/etc", ErrorCode::InvalidPath),
        ("nope", ErrorCode::NotFound),
        ("f", ErrorCode::NotADirectory),
    ] {
        assert_eq!(code(sb.executor.create_watcher(&p(path), true).await.unwrap_err()), want, "{path}");
        assert_eq!(code(sb.executor.watch(&p(path), false).await.err().unwrap()), want, "{path}");
    }

    let mut stream = sb.executor.watch(&p("w"), true).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), WatchEvent::Start);
    let polled = sb.executor.create_watcher(&p("w"), true).await.unwrap();
    let flat = sb.executor.create_watcher(&p("w"), false).await.unwrap();
    assert_eq!(sb.executor.watchers().await.unwrap().len(), 2);
    run(
        &sb,
        "import os, time\nopen('w/a.txt','w').write('1')\nos.makedirs('w/sub')\ntime.sleep(0.3)\n\
         open('w/sub/inner.txt','w').write('2')\nos.chmod('w/a.txt', 0o600)\nos.rename('w/a.txt', 'w/sub/b.txt')\n\
         os.remove('w/sub/inner.txt')\nopen('/workspace/f','a').write('outside the watched directory')",
    )
    .await;
    let want = [
        change("a.txt", Create),
        change("a.txt", Write),
        change("sub", Create),
        change("sub/inner.txt", Create),
        change("sub/inner.txt", Write),
        change("a.txt", Chmod),
        change("a.txt", Rename),
        change("sub/b.txt", Create),
        change("sub/inner.txt", Remove),
    ];
    let seen = stream_until(&mut stream, &want).await;
    assert!(seen.iter().all(|e| !matches!(e, WatchEvent::Change { name, .. } if name == "f")), "{seen:?}");
    poll_until(&sb, &polled.id, &want).await;
    // Not recursive: the directory's own entries only.
    let flat_seen = poll_until(&sb, &flat.id, &[change("a.txt", Create), change("sub", Create)]).await;
    assert!(!flat_seen.contains(&change("sub/inner.txt", Create)), "{flat_seen:?}");

    // A watch of the workspace root does not follow the link to `/`.
    let root_watch = sb.executor.create_watcher(&WorkspacePath::root(), true).await.unwrap();
    run(&sb, "open('/tmp/outside','w').write('x')\nopen('marker','w').write('x')").await;
    let seen = poll_until(&sb, &root_watch.id, &[change("marker", Create)]).await;
    assert!(
        seen.iter().all(|e| !matches!(e, WatchEvent::Change { name, .. } if name.contains("outside"))),
        "{seen:?}"
    );

    // Removing the watched directory ends the watch.
    run(&sb, "import shutil\nshutil.rmtree('w')").await;
    stream_until(&mut stream, &[change("sub", Remove), WatchEvent::End]).await;
    assert!(tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap().is_none());
    poll_until(&sb, &polled.id, &[WatchEvent::End]).await;

    for w in [&polled, &flat, &root_watch] {
        sb.executor.remove_watcher(&w.id).await.unwrap();
    }
    assert_eq!(code(sb.executor.watcher_events(&polled.id).await.unwrap_err()), ErrorCode::NotFound);
    assert!(sb.executor.watchers().await.unwrap().is_empty());
    // The cap: a dropped stream gives its place back.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(sb.executor.watch(&WorkspacePath::root(), false).await.unwrap());
    }
    assert_eq!(
        code(sb.executor.create_watcher(&WorkspacePath::root(), false).await.unwrap_err()),
        ErrorCode::TooManyWatchers
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match sb.executor.create_watcher(&WorkspacePath::root(), false).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(code(e), ErrorCode::TooManyWatchers);
                assert!(Instant::now() < deadline, "dropped watch streams were never released");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
