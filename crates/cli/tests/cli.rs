//! The `sandbox` binary against a real server, for commands that start no sandbox: login and
//! configuration, errors and exit codes, keys, templates, pools, health and completions.

mod common;

use common::{Server, describe};
use std::os::unix::fs::PermissionsExt;

#[test]
fn login_checks_the_key_and_stores_it_readable_by_the_owner_only() {
    let server = Server::start();
    let config = server.config_path();

    // Nothing configured: a clear error, exit 125.
    let out = server.bare().args(["session", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: config_missing: no server URL"),
        "{}",
        describe(&out)
    );

    // A wrong key is refused by the server and nothing is stored.
    let out = server.bare().args(["login", "--url", &server.url, "--key", "wrong"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: unauthorized: "), "{}", describe(&out));
    assert!(!config.exists());

    // The right key (read from stdin here) is stored with mode 0600.
    let mut login = server
        .bare()
        .args(["login", "--url", &server.url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(login.stdin.take().unwrap(), "{}", server.key).unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&server.key) && text.contains(&server.url), "{text}");

    // The file is used when nothing else is given.
    let out = server.bare().args(["keys", "list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    // Precedence: the environment beats the file, a flag beats the environment.
    let out = server.bare().env("SANDBOX_KEY", "from-env").args(["keys", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "the environment's key is used: {}", describe(&out));
    let out =
        server.bare().env("SANDBOX_KEY", "from-env").args(["keys", "list", "--key", &server.key]).output();
    assert!(out.unwrap().status.success());

    // Logging in again narrows a file that was made readable by others.
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = server.bare().args(["login", "--key", &server.key]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn errors_print_the_servers_code_and_exit_125() {
    let server = Server::start();
    let out = server.sandbox().args(["session", "list", "--key", "bad"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: unauthorized: "), "{}", describe(&out));
    assert!(out.stdout.is_empty());

    let out = server.sandbox().args(["session", "get", "sess_nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: session_not_found: "),
        "{}",
        describe(&out)
    );

    let out = server.sandbox().args(["templates", "get", "no-such-template"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: template_not_found: "),
        "{}",
        describe(&out)
    );

    // Nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = server
        .sandbox()
        .args(["session", "list", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: connection_failed: "),
        "{}",
        describe(&out)
    );

    // Bad arguments are clap's exit 2; a bad --env is the CLI's own error.
    let out = server.sandbox().args(["session", "lisst"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = server.sandbox().args(["session", "create", "--env", "NOEQUALS"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: invalid_argument: "),
        "{}",
        describe(&out)
    );
    let out = server.sandbox().args(["files", "ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session"), "{}", describe(&out));
}

#[test]
fn keys_templates_pools_and_health_as_tables_and_json() {
    let server = Server::start();

    let created = server.json(&["keys", "create", "ci-bot"]);
    let (id, secret) = (created["id"].as_str().unwrap(), created["key"].as_str().unwrap());
    let table = server.ok(&["keys", "list"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("NAME") && header.contains("PREFIX"), "{table}");
    let row = table.lines().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("ci-bot"), "{table}");
    // Columns are aligned: NAME starts at one offset on every line.
    let col = header.find("NAME").unwrap();
    assert_eq!(&row[col..col + 6], "ci-bot", "{table}");
    let listed = server.json(&["keys", "list"]);
    assert!(listed["items"].as_array().unwrap().iter().any(|k| k["id"] == id), "{listed}");

    // The new (non-admin) key works but is no admin; revoked, it no longer works.
    let out = server.sandbox().args(["session", "list", "--key", secret]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let out = server.sandbox().args(["keys", "list", "--key", secret]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: forbidden: "), "{}", describe(&out));
    assert_eq!(server.ok(&["keys", "revoke", id]).trim(), format!("revoked {id}"));
    let out = server.sandbox().args(["session", "list", "--key", secret]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));

    let templates = server.json(&["templates", "list"]);
    assert!(templates.as_array().unwrap().iter().any(|t| t["id"] == "python-basic"), "{templates}");
    assert!(server.ok(&["templates", "list"]).lines().any(|l| l.starts_with("python-basic ")));
    let made = server.json(&[
        "templates",
        "create",
        "--id",
        "cli-test",
        "--image",
        "sandbox/python-basic:latest",
        "--memory-mb",
        "256",
    ]);
    assert_eq!(made["default_memory_mb"], 256);
    assert_eq!(made["status"], "ready", "an image the host has: nothing to pull or follow");
    assert!(server.ok(&["templates", "get", "cli-test"]).contains("default_memory_mb: 256"));
    assert_eq!(server.ok(&["templates", "delete", "cli-test"]).trim(), "deleted cli-test");
    assert_eq!(
        server.sandbox().args(["templates", "get", "cli-test"]).output().unwrap().status.code(),
        Some(125)
    );

    let pools = server.json(&["pools"]);
    assert!(pools["items"].as_array().unwrap().iter().any(|p| p["template_id"] == "python-basic"), "{pools}");
    assert!(server.ok(&["pools"]).starts_with("TEMPLATE"));

    let health = server.json(&["health"]);
    assert!(health["version"].is_string(), "{health}");
    // Health needs no key.
    let out = server.bare().args(["health", "--url", &server.url]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("status: "));

    let sessions = server.json(&["session", "list", "--limit", "5"]);
    assert_eq!((sessions["total"].as_u64(), sessions["limit"].as_u64()), (Some(0), Some(5)), "{sessions}");
}

#[test]
fn completions_are_generated_for_each_shell() {
    let server = Server::start();
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef sandbox"), ("fish", "complete -c sandbox")]
    {
        let script = server.ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("session") && script.contains("files"), "{shell}");
    }
    let out = server.sandbox().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn mcp_answers_every_request_even_when_the_server_cannot_be_reached() {
    let server = Server::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut mcp = server
        .sandbox()
        .args(["mcp", "--url", &format!("http://127.0.0.1:{port}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
        "\n",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "\n\nnot json\n",
        r#"[{"jsonrpc":"2.0","id":"b","method":"tools/list"}]"#,
        "\n",
    );
    use std::io::Write;
    mcp.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = mcp.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stdin's end ends it: {}", describe(&out));
    // Stdout holds JSON-RPC only, one message a line: an error for each request (none for the
    // notification), a parse error for the line that is not JSON.
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&serde_json::Value> = lines.iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, [&serde_json::json!(1), &serde_json::Value::Null, &serde_json::json!("b")], "{lines:?}");
    assert!(lines.iter().all(|m| m["jsonrpc"] == "2.0" && m["error"]["code"].is_i64()), "{lines:?}");
    assert_eq!(lines[1]["error"]["code"], -32700);
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection_failed"), "{}", describe(&out));
}
