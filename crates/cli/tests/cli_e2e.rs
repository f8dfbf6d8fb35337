//! The `sandbox` binary against a real server with real sandboxes: sessions, `exec` (exit codes,
//! live output, contexts, Ctrl-C), file copies both ways with progress only on a terminal, and
//! template image pulls followed to their end.

mod common;

use common::{Server, describe};
use sandbox_e2e::registry::{PulledImages, Registry};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn sessions_as_tables_and_json() {
    let server = Server::start();
    let created = server.json(&["session", "create", "--env", "MODE=test"]);
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "running", "{created}");

    let table = server.ok(&["session", "list"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATUS") && header.contains("TEMPLATE"), "{table}");
    let row = lines.find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(&row[header.find("STATUS").unwrap()..][..7], "running", "{table}");

    let listed = server.json(&["session", "list", "--status", "running"]);
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], id);
    assert_eq!(server.json(&["session", "list", "--status", "terminated"])["total"], 0);

    let shown = server.ok(&["session", "get", id]);
    assert!(shown.lines().any(|l| l == format!("id: {id}")), "{shown}");
    assert!(shown.lines().any(|l| l == "status: running"), "{shown}");
    assert_eq!(server.json(&["session", "get", id])["env_vars"]["MODE"], "test");

    // A session made without waiting, then waited for.
    let second = server.json(&["session", "create", "--no-wait"]);
    let second = second["id"].as_str().unwrap();
    assert_eq!(server.ok(&["session", "wait", second]).trim(), second);
    assert_eq!(server.json(&["session", "get", second])["status"], "running");

    assert_eq!(server.ok(&["session", "terminate", id]).trim(), format!("terminated {id}"));
    assert_eq!(server.json(&["session", "get", id])["status"], "terminated");
    let out = server.sandbox().args(["session", "wait", id, "--timeout", "5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: session_terminated: "),
        "{}",
        describe(&out)
    );

    assert_eq!(server.json(&["session", "delete", id, second])["deleted"], serde_json::json!([id, second]));
    let out = server.sandbox().args(["session", "get", id]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: session_not_found: "));
}

#[test]
fn exec_mirrors_exit_codes_streams_live_and_keeps_context_state() {
    let server = Server::start();
    let id = server.session();
    let exec = |args: &[&str]| server.sandbox().args(["exec", "--session", &id]).args(args).output().unwrap();

    // From an argument.
    let out = exec(&["--code", "print(6 * 7)"]);
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "42\n"),
        "{}",
        describe(&out)
    );

    // From a file: the language from its extension, the exit code the program's.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fail.sh");
    std::fs::write(&script, "echo out; echo err >&2; exit 3\n").unwrap();
    let out = exec(&[script.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // From stdin; an exception is exit 1.
    let mut child = server
        .sandbox()
        .args(["exec", "--session", &id, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"print('from stdin')\n1 / 0\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from stdin\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ZeroDivisionError"), "{}", describe(&out));

    // A timeout is 124; --json prints the execution.
    let out = exec(&["--timeout", "1", "--json", "--code", "import time\ntime.sleep(30)"]);
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    let execution: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(execution["status"], "timeout", "{execution}");

    // Live: the first line arrives while the program still runs.
    let started = Instant::now();
    let mut child = server
        .sandbox()
        .args([
            "exec",
            "--session",
            &id,
            "--code",
            "import time\nprint('first', flush=True)\ntime.sleep(4)\nprint('second')",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    assert!(child.try_wait().unwrap().is_none(), "the CLI ended before the program did");
    let first_at = started.elapsed();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "second\n");
    assert!(started.elapsed() >= first_at + Duration::from_secs(3), "second came with first");
    assert!(child.wait().unwrap().success());

    // A code context keeps state between runs.
    let ctx = server.ok(&["context", "create", "--session", &id]).trim().to_owned();
    assert!(exec(&["--context", &ctx, "--code", "x = 41"]).status.success());
    let out = exec(&["--context", &ctx, "--code", "print(x + 1)"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{}", describe(&out));
    let contexts = server.ok(&["context", "list", "--session", &id]);
    let row = contexts.lines().find(|l| l.starts_with(&ctx)).unwrap_or_else(|| panic!("{contexts}"));
    assert!(row.contains("python") && row.contains("idle"), "{contexts}");
    assert_eq!(server.json(&["context", "list", "--session", &id])["total"], 1);
    assert_eq!(server.ok(&["context", "delete", "--session", &id, &ctx]).trim(), format!("deleted {ctx}"));
    assert_eq!(server.json(&["context", "list", "--session", &id])["total"], 0);

    // Ctrl-C cancels the execution and exits 130.
    let mut child = server
        .sandbox()
        .args(["exec", "--session", &id, "--code", "import time\nprint('go', flush=True)\ntime.sleep(60)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "go\n");
    let t = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled exec_"), "{}", describe(&out));

    // Without --session: a throwaway session, deleted afterwards.
    let out = server
        .sandbox()
        .args(["exec", "--code", "import os; print(os.environ['WHO'])", "--env", "WHO=throwaway"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "throwaway\n", "{}", describe(&out));
    assert_eq!(server.json(&["session", "list"])["total"], 1, "only the session of this test is left");
}

#[test]
fn files_copy_both_ways_with_progress_on_a_terminal_only() {
    let server = Server::start();
    let id = server.session();
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(tree.join("sub/deeper/b.txt"), "beta\n").unwrap();
    // 5 MiB that compress badly.
    let big: Vec<u8> = (0..5u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(tree.join("sub/big.bin"), &big).unwrap();

    // A directory up: as `up` (as `cp -r` names a new directory).
    let dest = format!("{id}:/workspace/up");
    let out = server.sandbox().args(["files", "cp", tree.to_str().unwrap(), &dest]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains('\x1b'),
        "no escape codes when piped: {}",
        describe(&out)
    );
    let listing = server.json(&["files", "ls", "-R", &format!("{id}:up")]);
    let paths: Vec<&str> =
        listing["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    for want in ["up/a.txt", "up/sub/deeper/b.txt", "up/sub/big.bin", "up/empty"] {
        assert!(paths.contains(&want), "{want} in {paths:?}");
    }
    // Into an existing directory: below it, under its own name.
    let out =
        server.sandbox().args(["files", "cp", tree.join("sub/deeper").to_str().unwrap(), &dest]).output();
    assert!(out.unwrap().status.success());
    assert_eq!(server.ok(&["files", "cat", &format!("{id}:up/deeper/b.txt")]), "beta\n");
    let table = server.ok(&["files", "ls", "--session", &id, "up/sub"]);
    assert!(table.starts_with("TYPE"), "{table}");
    assert!(table.lines().any(|l| l.contains("5.0 MiB") && l.ends_with("up/sub/big.bin")), "{table}");
    assert_eq!(server.ok(&["files", "cat", "--session", &id, "up/sub/deeper/b.txt"]), "beta\n");

    // And back down: the same bytes.
    let back = local.path().join("back");
    let out =
        server.sandbox().args(["files", "cp", &format!("{id}:up"), back.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read(back.join("a.txt")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read(back.join("sub/deeper/b.txt")).unwrap(), b"beta\n");
    assert!(std::fs::read(back.join("sub/big.bin")).unwrap() == big, "the big file came back changed");
    assert!(back.join("empty").is_dir());

    // One file each way, with the default session (`:PATH`), and into an existing directory.
    let single = local.path().join("single.txt");
    std::fs::write(&single, "one\n").unwrap();
    let copied = server
        .sandbox()
        .env("SANDBOX_SESSION", &id)
        .args(["files", "cp", single.to_str().unwrap(), ":up/", "--json"])
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", describe(&copied));
    let copied: serde_json::Value = serde_json::from_slice(&copied.stdout).unwrap();
    assert_eq!(copied["files"][0]["to"], "up/single.txt", "{copied}");
    // A trailing `/` names a directory, made when missing.
    let out =
        server.sandbox().args(["files", "cp", single.to_str().unwrap(), &format!("{id}:fresh/")]).output();
    assert!(out.unwrap().status.success());
    assert_eq!(server.ok(&["files", "cat", &format!("{id}:fresh/single.txt")]), "one\n");
    let out = server
        .sandbox()
        .env("SANDBOX_SESSION", &id)
        .args(["files", "cp", ":up/single.txt", back.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::read(back.join("single.txt")).unwrap(), b"one\n");

    // On a terminal a large transfer draws a bar; piped (above) it did not.
    let bin = env!("CARGO_BIN_EXE_sandbox");
    let cmd = format!(
        "{bin} files cp {} {id}:tty.bin && {bin} files cp {id}:tty.bin {}",
        tree.join("sub/big.bin").display(),
        local.path().join("tty.bin").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SANDBOX_URL", &server.url)
        .env("SANDBOX_KEY", &server.key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    // The message is cut to the terminal's width, and the first frame drawn depends on speed:
    // look for each bar's label and its total.
    assert!(
        shown.contains("uploading big")
            && shown.contains("downloading tty")
            && shown.matches("/5.00 MiB").count() >= 2,
        "a progress bar on the terminal for each transfer: {shown:?}"
    );
    assert!(shown.contains("\x1b["), "drawn with escape codes on the terminal: {shown:?}");
    assert!(std::fs::read(local.path().join("tty.bin")).unwrap() == big);
    assert_eq!(server.json(&["files", "ls", &format!("{id}:tty.bin")])["size"], big.len());
    assert!(server.ok(&["files", "ls", &format!("{id}:tty.bin")]).lines().any(|l| l.ends_with(" tty.bin")));

    // A listing longer than one page of the server's (10000 entries) comes whole.
    let out = server
        .sandbox()
        .args(["exec", "--session", &id, "--language", "python", "--code"])
        .arg("import os\nos.makedirs('many')\nfor i in range(10050): open(f'many/{i:05}', 'w').close()")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let many = server.json(&["files", "ls", "-R", &format!("{id}:many")]);
    assert_eq!(many["files"].as_array().unwrap().len(), 10050, "every page of the listing");

    // Deleting.
    let out = server.sandbox().args(["files", "rm", "--session", &id, "up"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "a directory needs -r: {}", describe(&out));
    assert_eq!(server.ok(&["files", "rm", "-r", &format!("{id}:up")]).trim(), format!("removed {id}:up"));
    let out = server.sandbox().args(["files", "cat", &format!("{id}:up/a.txt")]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: file_not_found: "),
        "{}",
        describe(&out)
    );
}

#[test]
fn deps_install_adds_packages_from_an_index() {
    // A real package index on loopback, serving a wheel this test builds.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let index = runtime.block_on(sandbox_e2e::pypi::TestIndex::start());
    index.publish("sbx-hello", "1.0.0", &[], "def greet():\n    return 'hello 1'\n");
    let server = Server::start_with(&[
        ("SANDBOX_EGRESS__ALLOWED_ADDRESSES", "127.0.0.1"),
        ("SANDBOX_DEPENDENCIES__ALLOWED_INDEX_URLS", "http://127.0.0.1:*/"),
    ]);
    let id = server.session();
    let url = index.url();

    let out = server
        .sandbox()
        .args(["deps", "install", "sbx-hello==1.0.0", "--index-url", &url, "-s", &id])
        .output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}\n{}", describe(&out), server.log());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("PACKAGE"), "{table}");
    // pip's output streamed to standard error as it ran.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.lines().any(|l| l.starts_with("Collecting sbx-hello==1.0.0")), "{progress}");
    assert!(progress.lines().any(|l| l == "Successfully installed sbx-hello-1.0.0"), "{progress}");
    assert!(
        table.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["sbx-hello", "1.0.0"]),
        "{table}"
    );
    let out = server
        .sandbox()
        .args(["exec", "-s", &id, "--code", "import sbx_hello; print(sbx_hello.greet())"])
        .output();
    assert_eq!(String::from_utf8_lossy(&out.unwrap().stdout), "hello 1\n");

    // An unknown package: the server's code, exit 125.
    let out = server
        .sandbox()
        .args(["deps", "install", "sbx-nope", "--index-url", &url, "-s", &id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No matching distribution found for sbx-nope"), "{}", describe(&out));
    // pip's lines, then the error.
    assert!(stderr.contains("\nerror: package_not_found: "), "{}", describe(&out));
    assert_eq!(server.json(&["session", "get", &id])["dependency_install_status"], "failed");
}

#[test]
fn templates_create_follows_an_image_pull_with_progress_on_a_terminal() {
    // A registry on loopback serving images the Docker host has not got.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let registry = runtime.block_on(Registry::start(false, &["piped", "later", "tty"]));
    let _cleanup = PulledImages(["piped", "later", "tty"].map(|t| registry.image(t)).to_vec());
    let server = Server::start();
    registry.open();

    // Piped: the template once its image is in, and nothing drawn.
    let out = server
        .sandbox()
        .args(["templates", "create", "--id", "piped", "--image", &registry.image("piped"), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", describe(&out), server.log());
    let template: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(template["status"], "ready", "{template}");
    assert!(out.stderr.is_empty(), "{}", describe(&out));

    // --no-wait answers while the registry holds the layers back.
    registry.close();
    let later = server.json(&[
        "templates",
        "create",
        "--id",
        "later",
        "--image",
        &registry.image("later"),
        "--no-wait",
    ]);
    assert_eq!(later["status"], "pulling", "{later}");

    // On a terminal: the pull's progress until it is done (the layers come after a while).
    let bin = env!("CARGO_BIN_EXE_sandbox");
    let cmd = format!("{bin} templates create --id tty --image {}", registry.image("tty"));
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            registry.open();
        });
        std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("SANDBOX_URL", &server.url)
            .env("SANDBOX_KEY", &server.key)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(shown.contains("pulling the image of tty") && shown.contains("\x1b["), "{shown:?}");
    assert_eq!(server.json(&["templates", "get", "tty"])["status"], "ready");
    assert_eq!(server.json(&["templates", "get", "later"])["status"], "ready");

    // A tag the registry lacks: the pull's error, exit 125.
    let out = server
        .sandbox()
        .args(["templates", "create", "--id", "missing", "--image", &registry.image("no-such-tag")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: image_not_found: "), "{}", describe(&out));
}
