//! A real `sandbox-server` for the CLI's tests, and the built `sandbox` binary pointed at it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `sandbox-server` binary: `$SANDBOX_TEST_SERVER_BIN`, else the one built next to
/// `sandbox` (`cargo nextest run --workspace` builds it; so does `cargo build -p sandbox-server`).
pub fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SANDBOX_TEST_SERVER_BIN") {
        return bin.into();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_sandbox")).with_file_name("sandbox-server");
    assert!(
        bin.exists(),
        "{} is missing: build it (`cargo build -p sandbox-server`, or run the tests with \
         `cargo nextest run --workspace`) or set SANDBOX_TEST_SERVER_BIN",
        bin.display()
    );
    bin
}

/// A running `sandbox-server` on a free port, with its own data directory and admin key.
pub struct Server {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// Its admin key.
    pub key: String,
    /// Its data directory; the tests' config files go here too.
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server (warm pools off) and waits until it answers.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with `env` on top of the defaults and waits until it answers.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::Builder::new().prefix("sandbox-cli-e2e-").tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let key = format!("test-admin-key-{}", std::process::id());
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(server_bin());
        cmd.arg("serve")
            .env("SANDBOX_DATA_DIR", dir.path())
            .env("SANDBOX_POOLS__DEFAULT_SIZE", "0")
            .env("SANDBOX_LISTEN", format!("127.0.0.1:{port}"))
            .env("SANDBOX_API_KEY", &key)
            .env("SANDBOX_LOG_FORMAT", "text")
            // Installs never leave this host: without an index of its own, a test installs from a
            // loopback port nothing listens on, rather than from PyPI.
            .env("SANDBOX_DEPENDENCIES__DEFAULT_INDEX_URL", "http://127.0.0.1:9/simple/")
            .env("SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS", "")
            .stdout(Stdio::null())
            .stderr(log);
        if let Ok(prefix) = std::env::var("IMAGE_PREFIX") {
            cmd.env("SANDBOX_IMAGE_PREFIX", prefix);
        }
        cmd.envs(env.iter().copied());
        let child = cmd.spawn().expect("sandbox-server starts");
        let server = Server { child, url: format!("http://127.0.0.1:{port}"), key, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.sandbox().arg("health").output().unwrap().status.success() {
            assert!(Instant::now() < deadline, "the server did not come up: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The path of a config file in the data directory (not made).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config").join("sandbox.toml")
    }

    /// The `sandbox` command with no configuration at all (no environment, no config file).
    pub fn bare(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sandbox"));
        for var in ["SANDBOX_URL", "SANDBOX_KEY", "SANDBOX_SESSION", "SANDBOX_TEMPLATE", "XDG_CONFIG_HOME"] {
            cmd.env_remove(var);
        }
        cmd.env("SANDBOX_CONFIG", self.config_path()).stdin(Stdio::null());
        cmd
    }

    /// The `sandbox` command configured for this server with the admin key.
    pub fn sandbox(&self) -> Command {
        let mut cmd = self.bare();
        cmd.env("SANDBOX_URL", &self.url).env("SANDBOX_KEY", &self.key);
        cmd
    }

    /// Runs `sandbox ARGS`, asserting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.sandbox().args(args).output().unwrap();
        assert!(out.status.success(), "sandbox {args:?}: {}\n{}", describe(&out), self.log());
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `sandbox ARGS --json`, asserting success; its JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(&[args, &["--json"]].concat());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sandbox {args:?} --json: {e}: {text}"))
    }

    /// Creates a running session; its id.
    pub fn session(&self) -> String {
        self.ok(&["session", "create"]).trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        sandbox_e2e::clean_data_dir(self.dir.path());
    }
}

/// A process's exit code, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
