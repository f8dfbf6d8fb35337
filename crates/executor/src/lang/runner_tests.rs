//! The runners, driven the way the executor drives them (requests on descriptor 6, messages on
//! descriptor 3), with the real interpreters but without a sandbox around them.

use super::{Request, launch};
use sandbox_core::Language;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

struct Runner {
    language: Language,
    dir: tempfile::TempDir,
    child: Child,
    requests: std::fs::File,
    messages: Receiver<Value>,
    stdout: Receiver<String>,
}

impl Runner {
    /// Starts `language`'s runner from a directory of its own, as the executor's `/sandbox`.
    fn start(language: Language) -> Runner {
        let l = launch(language);
        let dir = tempfile::tempdir().unwrap();
        for (name, source) in l.files {
            std::fs::write(dir.path().join(name), source).unwrap();
        }
        let runner = dir.path().join(l.files[0].0);
        let mut args: Vec<String> = l.args.iter().map(|a| a.to_string()).collect();
        *args.last_mut().unwrap() = runner.to_str().unwrap().to_owned();
        let (results_rx, results_tx) = rustix::pipe::pipe().unwrap();
        let (requests_rx, requests_tx) = rustix::pipe::pipe().unwrap();
        let fds = [(results_tx.as_raw_fd(), super::RESULT_FD), (requests_rx.as_raw_fd(), super::REQUEST_FD)];
        let mut cmd = Command::new(l.program);
        cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).current_dir(dir.path()).process_group(0);
        // SAFETY: only dup2 between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in fds {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        drop((results_tx, requests_rx));
        Runner {
            language,
            dir,
            messages: lines(std::fs::File::from(results_rx), |l| serde_json::from_str(&l).unwrap()),
            stdout: lines(child.stdout.take().unwrap(), |l| l),
            child,
            requests: std::fs::File::from(requests_tx),
        }
    }

    fn send(&mut self, request: Request<'_>) {
        self.requests.write_all(request.line().as_bytes()).unwrap();
    }

    /// Messages up to and including the next `done`.
    fn until_done(&self) -> (Vec<Value>, Value) {
        let mut displays = Vec::new();
        loop {
            let m = self.messages.recv_timeout(Duration::from_secs(30)).expect("the runner answers");
            if m["type"] == "done" {
                return (displays, m);
            }
            displays.push(m);
        }
    }

    fn context(language: Language) -> Runner {
        let mut r = Runner::start(language);
        let cwd = r.dir.path().to_str().unwrap().to_owned();
        r.send(Request::Context(&cwd));
        let (_, done) = r.until_done();
        assert_eq!(done, json!({"type": "done", "seq": 0, "exit_code": 0, "error": null}));
        r
    }

    fn cell(&mut self, seq: u64, code: &str) -> (Vec<Value>, Value) {
        std::fs::write(self.dir.path().join(launch(self.language).cell_file), code).unwrap();
        self.send(Request::Cell(seq));
        let (displays, done) = self.until_done();
        assert_eq!(done["seq"], seq);
        (displays, done)
    }

    fn interrupt(&self) {
        let pid = self.child.id() as libc::pid_t;
        let target = launch(self.language).interrupt.target(pid);
        unsafe { libc::kill(target, libc::SIGINT) };
    }

    fn stdout_line(&self) -> String {
        self.stdout.recv_timeout(Duration::from_secs(30)).expect("a line of output")
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        unsafe { libc::killpg(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn lines<T: Send + 'static>(r: impl std::io::Read + Send + 'static, parse: fn(String) -> T) -> Receiver<T> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(parse(line)).is_err() {
                return;
            }
        }
    });
    rx
}

fn main_result(displays: &[Value]) -> Value {
    let main: Vec<_> = displays.iter().filter(|d| d["output"]["is_main_result"] == true).collect();
    assert_eq!(main.len(), 1, "{displays:?}");
    main[0]["output"]["data"].clone()
}

#[test]
fn python_cells_keep_state_and_show_their_last_value() {
    let mut r = Runner::context(Language::Python);
    let (d, done) = r.cell(1, "import os\nx = 41\nx + 1");
    assert_eq!((main_result(&d)["text/plain"].clone(), done["exit_code"].clone()), (json!("42"), json!(0)));
    let (d, _) = r.cell(2, "x * 2;");
    assert!(d.is_empty(), "a trailing ';' keeps the value quiet: {d:?}");
    let (d, _) = r.cell(3, "async def f():\n    return x\nawait f()");
    assert_eq!(main_result(&d)["text/plain"], "41", "top-level await");
    let (d, _) = r.cell(4, "print(os.getcwd())\n_");
    assert_eq!(r.stdout_line(), r.dir.path().to_str().unwrap(), "the context works in its directory");
    assert_eq!(main_result(&d)["text/plain"], "41", "`_` is the last value shown");

    let (_, done) = r.cell(5, "def f():\n    return 1 / 0\nf()");
    let e = &done["error"];
    assert_eq!(
        (e["name"].as_str(), e["value"].as_str(), done["exit_code"].as_i64()),
        (Some("ZeroDivisionError"), Some("division by zero"), Some(1))
    );
    let tb = e["traceback"].as_str().unwrap();
    assert!(tb.contains("<cell-5>\", line 2, in f\n    return 1 / 0"), "{tb}");
    assert!(
        !tb.contains("runner.py") && !tb.contains("notebook.py"),
        "the runner's frames are left out: {tb}"
    );
    let (_, done) = r.cell(6, "import sys\nsys.exit(3)");
    assert_eq!((done["exit_code"].as_i64(), done["error"]["name"].as_str()), (Some(3), Some("SystemExit")));
    let (d, _) = r.cell(7, "x");
    assert_eq!(main_result(&d)["text/plain"], "41", "an exception and SystemExit leave the state alone");
}

#[test]
fn python_display_follows_the_ipython_protocol() {
    let mut r = Runner::context(Language::Python);
    let code = "class Rich:\n\
                \x20   def _repr_html_(self):\n        return '<b>rich</b>'\n\
                \x20   def _repr_png_(self):\n        return b'\\x89PNG'\n\
                \x20   def _repr_json_(self):\n        return {'a': float('nan')}\n\
                \x20   def _repr_markdown_(self):\n        raise ValueError('no markdown')\n\
                \x20   def __repr__(self):\n        return 'Rich()'\n\
                display(Rich(), 'plain')\n\
                display({'text/html': '<i>raw</i>', 'image/svg+xml': b'<svg/>'}, raw=True)\n\
                Rich()";
    let (d, done) = r.cell(1, code);
    assert_eq!(done["error"], Value::Null, "{done}");
    let data: Vec<Value> = d.iter().map(|m| m["output"]["data"].clone()).collect();
    assert_eq!(data[0], json!({"text/html": "<b>rich</b>", "image/png": "iVBORw==", "text/plain": "Rich()"}));
    assert_eq!(data[1], json!({"text/plain": "'plain'"}));
    assert_eq!(data[2], json!({"text/html": "<i>raw</i>", "image/svg+xml": "<svg/>"}));
    assert_eq!(main_result(&d), data[0], "the last value is shown the same way");
    assert_eq!(d.iter().filter(|m| m["output"]["is_main_result"] == true).count(), 1);
}

#[test]
fn python_interrupts_end_the_cell_not_the_context() {
    let mut r = Runner::context(Language::Python);
    r.cell(1, "kept = 'yes'");
    std::fs::write(
        r.dir.path().join("cell.py"),
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)",
    )
    .unwrap();
    r.send(Request::Cell(2));
    assert_eq!(r.stdout_line(), "sleeping");
    r.interrupt();
    let (_, done) = r.until_done();
    assert_eq!((done["seq"].as_u64(), done["error"]["name"].as_str()), (Some(2), Some("KeyboardInterrupt")));
    // Between cells an interrupt changes nothing.
    r.interrupt();
    std::thread::sleep(Duration::from_millis(100));
    let (d, _) = r.cell(3, "kept");
    assert_eq!(main_result(&d)["text/plain"], "'yes'");
}

/// The result and request descriptors are the runner's alone: a program the code starts does
/// not have them.
#[test]
fn programs_started_by_the_code_do_not_get_the_descriptors() {
    let mut r = Runner::context(Language::Python);
    let code = "import subprocess\n\
                print(subprocess.run(['sh', '-c', 'echo forged >&3 && echo leaked 3; cat <&6 && echo leaked 6'], capture_output=True).stdout)";
    let (_, done) = r.cell(1, code);
    assert_eq!(done["error"], Value::Null);
    assert_eq!(r.stdout_line(), "b''");
    let mut r = Runner::context(Language::Javascript);
    let code = "require('child_process').spawnSync('sh', ['-c', 'echo forged >&3 && echo leaked 3; cat <&6 && echo leaked 6']).stdout.toString()";
    let (d, _) = r.cell(1, code);
    assert_eq!(main_result(&d)["application/json"], "");
}

#[test]
fn python_run_reports_after_its_displays() {
    let mut r = Runner::start(Language::Python);
    std::fs::write(
        r.dir.path().join("main.py"),
        "display('shown')\ndef handler(event):\n    return event['n'] + 1\n",
    )
    .unwrap();
    std::fs::write(r.dir.path().join("event.json"), r#"{"n": 1}"#).unwrap();
    let context =
        json!({"aws_request_id": "e1", "function_name": "f", "memory_limit_in_mb": 512, "deadline_ms": 0});
    std::fs::write(r.dir.path().join("context.json"), context.to_string()).unwrap();
    r.send(Request::Run);
    let first = r.messages.recv_timeout(Duration::from_secs(30)).unwrap();
    let second = r.messages.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first["output"]["data"], json!({"text/plain": "'shown'"}));
    assert_eq!(second, json!({"type": "report", "outcome": "returned", "value": 2}));
    assert!(r.child.wait().unwrap().success());
}

#[test]
fn javascript_cells_keep_state_and_can_be_interrupted() {
    let mut r = Runner::context(Language::Javascript);
    let (d, _) = r.cell(1, "var a = 40; let b = 2; a + b");
    assert_eq!(main_result(&d), json!({"text/plain": "42", "application/json": 42}));
    let (d, _) = r.cell(2, "display.html('<b>x</b>'); ({sum: a + b, cwd: process.cwd() === __dirname})");
    assert_eq!(d[0]["output"]["data"], json!({"text/html": "<b>x</b>"}));
    assert_eq!(main_result(&d)["application/json"], json!({"sum": 42, "cwd": true}));
    let (d, _) = r.cell(3, "new Promise((resolve) => setTimeout(() => resolve(b * 3), 10))");
    assert_eq!(main_result(&d)["application/json"], 6, "a promise is awaited");
    let (_, done) = r.cell(4, "throw new TypeError('boom-js')");
    assert_eq!(
        (done["error"]["name"].as_str(), done["error"]["value"].as_str()),
        (Some("TypeError"), Some("boom-js"))
    );
    assert!(!done["error"]["traceback"].as_str().unwrap().contains("runner.js"), "{done}");

    std::fs::write(r.dir.path().join("cell.js"), "console.log('spinning'); for (;;) {}").unwrap();
    r.send(Request::Cell(5));
    assert_eq!(r.stdout_line(), "spinning");
    r.interrupt();
    let (_, done) = r.until_done();
    assert!(done["error"]["value"].as_str().unwrap().contains("interrupted"), "{done}");
    let (d, _) = r.cell(6, "a");
    assert_eq!(main_result(&d)["application/json"], 40);
}

#[test]
fn shell_cells_keep_directory_and_variables_and_can_be_interrupted() {
    let mut r = Runner::context(Language::Shell);
    std::fs::create_dir(r.dir.path().join("sub")).unwrap();
    let (_, done) = r.cell(1, "cd sub; export GREETING=hi; count=1");
    assert_eq!(done["exit_code"], 0);
    let (_, done) = r.cell(2, "echo \"$GREETING $count $(basename \"$PWD\")\"; false");
    assert_eq!((r.stdout_line(), done["exit_code"].as_i64()), ("hi 1 sub".to_owned(), Some(1)));
    std::fs::write(r.dir.path().join("cell.sh"), "echo sleeping; sleep 60; echo not-reached").unwrap();
    r.send(Request::Cell(3));
    assert_eq!(r.stdout_line(), "sleeping");
    // Once `sleep` runs (a signal that lands while the shell is still starting a command ends
    // up with neither: the executor repeats its interrupt through the grace period).
    let children = format!("/proc/{0}/task/{0}/children", r.child.id());
    while std::fs::read_to_string(&children).unwrap().trim().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    r.interrupt();
    let (_, done) = r.until_done();
    assert_eq!(done["exit_code"], 130);
    r.cell(4, "echo $count");
    assert_eq!(r.stdout_line(), "1", "the interrupt ended the cell, not the shell");
    std::fs::write(r.dir.path().join("cell.sh"), "exit 4").unwrap();
    r.send(Request::Cell(5));
    assert_eq!(r.child.wait().unwrap().code(), Some(4), "`exit` ends the shell");
}

#[test]
fn python_run_ends_as_the_interpreter_would_without_its_full_teardown() {
    let mut r = Runner::start(Language::Python);
    let out = r.dir.path().join("left-open.txt");
    let code = format!(
        r#"
import atexit, threading, time
f = open({out:?}, "w")
f.write("buffered, never closed")
class Noisy:
    def __del__(self):
        print("del ran")
n = Noisy()
atexit.register(lambda: print("atexit ran"))
def late():
    time.sleep(0.2)
    print("thread ran")
threading.Thread(target=late).start()
print("main done")
raise SystemExit(3)
"#
    );
    std::fs::write(r.dir.path().join("main.py"), code).unwrap();
    r.send(Request::Run);
    let status = r.child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "the exit code is the program's");
    let printed: Vec<String> = (0..4).map(|_| r.stdout_line()).collect();
    assert_eq!(printed, ["main done", "thread ran", "atexit ran", "del ran"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "buffered, never closed", "open files are flushed");
}
