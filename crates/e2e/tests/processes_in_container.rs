//! Processes started on their own in a real, hardened sandbox container, driven over the
//! executor's socket: output, exit, reconnect, stdin, signals, timeout, caps, and nothing left
//! behind.

use futures_util::StreamExt;
use sandbox_e2e::TestSandbox;
use sandbox_executor_client::{ClientError, ProcessEvents};
use sandbox_protocol::{
    ErrorCode, ProcessEnd, ProcessEvent, ProcessRequest, ProcessSignal, ProcessState, PtySize,
};
use std::time::{Duration, Instant};

const TEMPLATE: &str = "python-basic";

/// `bash -l -c <script>`, as E2B's SDKs start commands.
fn bash(script: &str) -> ProcessRequest {
    ProcessRequest {
        cmd: "/bin/bash".into(),
        args: vec!["-l".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// What a stream brought.
#[derive(Debug, Default)]
struct Seen {
    pid: Option<u32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pty: Vec<u8>,
    end: Option<ProcessEnd>,
}

impl Seen {
    /// Nothing seen yet after `start` for `pid`.
    fn after(pid: Option<u32>) -> Seen {
        Seen { pid, ..Default::default() }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Reads `events` from their start until `end`, or until `stop` holds for what was seen (the
/// rest is left unread). Fails unless `start` comes first, or if the stream breaks or takes
/// over a minute.
async fn read(events: &mut ProcessEvents, stop: impl Fn(&Seen) -> bool) -> Seen {
    read_on(events, Seen::default(), stop).await
}

/// Like [`read`], going on from what was `seen` already.
async fn read_on(events: &mut ProcessEvents, mut seen: Seen, stop: impl Fn(&Seen) -> bool) -> Seen {
    let reading = async {
        while let Some(ev) = events.next().await {
            let ev = ev.expect("the stream does not break");
            if seen.pid.is_none() {
                let ProcessEvent::Start { pid } = ev else { panic!("start comes first, not {ev:?}") };
                seen.pid = Some(pid);
                if stop(&seen) {
                    break;
                }
                continue;
            }
            match ev {
                ProcessEvent::Start { .. } => panic!("a second start"),
                ProcessEvent::Stdout { data } => seen.stdout.extend(data),
                ProcessEvent::Stderr { data } => seen.stderr.extend(data),
                ProcessEvent::Pty { data } => seen.pty.extend(data),
                ProcessEvent::Keepalive => {}
                ProcessEvent::End(end) => {
                    seen.end = Some(end);
                    break;
                }
            }
            if stop(&seen) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reading).await.expect("the stream answers within a minute");
    seen
}

/// Reads `events` to their end, going on from what was `seen` already.
async fn to_end_from(events: &mut ProcessEvents, seen: Seen) -> Seen {
    let seen = read_on(events, seen, |_| false).await;
    assert!(seen.end.is_some(), "the stream ends with end: {seen:?}");
    assert!(events.next().await.is_none(), "nothing follows end");
    seen
}

/// Reads `events` from their start to their end.
async fn to_end(events: &mut ProcessEvents) -> Seen {
    to_end_from(events, Seen::default()).await
}

async fn start(sb: &TestSandbox, req: &ProcessRequest) -> ProcessEvents {
    sb.executor.start_process(req).await.unwrap_or_else(|e| panic!("{req:?}: {e}"))
}

fn api_code(e: ClientError) -> ErrorCode {
    e.api_error().unwrap_or_else(|| panic!("not an API error: {e}")).code
}

/// Waits until `cond` holds, up to 20 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_command_streams_its_output_and_exit() {
    let sb = TestSandbox::start(TEMPLATE).await;
    let mut events = start(&sb, &bash("echo hi; echo err >&2; exit 3")).await;
    let seen = to_end(&mut events).await;
    assert_eq!(
        (seen.stdout(), String::from_utf8_lossy(&seen.stderr).into_owned()),
        ("hi\n".into(), "err\n".into())
    );
    let end = seen.end.unwrap();
    assert_eq!((end.exit_code, end.exited, end.status.as_str(), end.error), (3, true, "exit status 3", None));
    let info = sb.executor.process(seen.pid.unwrap()).await.unwrap();
    assert_eq!((info.state, info.end.map(|e| e.exit_code)), (ProcessState::Exited, Some(3)));

    // The working directory and the variables apply; the workspace is there.
    std::fs::create_dir_all(sb.workspace_path("sub/dir")).unwrap();
    let mut req = bash("pwd; echo \"$GREETING\"; ls /workspace/sub");
    req.cwd = Some("sub".into());
    req.envs = [("GREETING".to_owned(), "hello there".to_owned())].into();
    let seen = to_end(&mut start(&sb, &req).await).await;
    assert_eq!(seen.stdout(), "/workspace/sub\nhello there\ndir\n");
    assert_eq!(seen.end.unwrap().exit_code, 0);

    // Bad requests change nothing.
    let mut bad = bash("true");
    bad.cwd = Some("/etc".into());
    assert_eq!(api_code(sb.executor.start_process(&bad).await.err().unwrap()), ErrorCode::InvalidPath);
    bad.cwd = Some("missing".into());
    assert_eq!(api_code(sb.executor.start_process(&bad).await.err().unwrap()), ErrorCode::NotFound);
    let empty = ProcessRequest::default();
    assert_eq!(api_code(sb.executor.start_process(&empty).await.err().unwrap()), ErrorCode::BadRequest);
    assert_eq!(api_code(sb.executor.process(999).await.err().unwrap()), ErrorCode::ProcessNotFound);
    assert_eq!(sb.executor.processes().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_background_process_outlives_its_stream_and_ends_killed() {
    let sb = TestSandbox::start(TEMPLATE).await;
    let mut req = bash("for i in $(seq 1 600); do echo tick $i; sleep 0.1; done");
    req.tag = Some("ticker".into());
    let mut events = start(&sb, &req).await;
    let first = read(&mut events, |s| s.stdout().contains("tick 2\n")).await;
    let pid = first.pid.unwrap();
    drop(events);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = sb.executor.processes().await.unwrap();
    let info = listed.iter().find(|p| p.pid == pid).expect("listed");
    assert_eq!((info.state, info.tag.as_deref()), (ProcessState::Running, Some("ticker")));

    // A reconnect gets output from the moment it attached: later ticks, never the first.
    let mut again = sb.executor.process_events(pid).await.unwrap();
    let later = read(&mut again, |s| s.stdout().matches("tick").count() >= 3).await;
    assert_eq!(later.pid, Some(pid));
    let text = later.stdout();
    assert!(!text.contains("tick 1\n") && !text.contains("tick 2\n"), "{text}");

    sb.executor.signal_process(pid, ProcessSignal::Kill).await.unwrap();
    let rest = to_end_from(&mut again, Seen::after(later.pid)).await;
    let end = rest.end.unwrap();
    assert_eq!((end.exit_code, end.exited, end.status.as_str()), (-1, false, "signal: killed"));

    // After its end: a reconnect answers start and end at once; signals and stdin are refused.
    let late = to_end(&mut sb.executor.process_events(pid).await.unwrap()).await;
    assert_eq!((late.stdout.len(), late.end.unwrap().status.as_str()), (0, "signal: killed"));
    let refused = sb.executor.signal_process(pid, ProcessSignal::Term).await.err().unwrap();
    assert_eq!(api_code(refused), ErrorCode::ProcessExited);
    let refused = sb.executor.write_stdin(pid, b"x".to_vec()).await.err().unwrap();
    assert_eq!(api_code(refused), ErrorCode::ProcessExited);
    eventually("the process's sandbox is gone", || !sb.processes().iter().any(|p| p.contains("seq 1 600")))
        .await;
}

#[tokio::test]
async fn stdin_reaches_the_process_until_closed() {
    let sb = TestSandbox::start(TEMPLATE).await;
    let mut req = ProcessRequest { cmd: "cat".into(), stdin: true, ..Default::default() };
    req.timeout_ms = 60_000;
    let mut events = start(&sb, &req).await;
    let first = read(&mut events, |s| s.pid.is_some()).await;
    let pid = first.pid.unwrap();
    sb.executor.write_stdin(pid, b"hello\n".to_vec()).await.unwrap();
    let echoed = read_on(&mut events, Seen::after(first.pid), |s| s.stdout() == "hello\n").await;
    assert_eq!(echoed.stdout(), "hello\n");
    sb.executor.write_stdin(pid, vec![0xff, 0x00, b'\n']).await.unwrap();
    sb.executor.close_stdin(pid).await.unwrap();
    let rest = to_end_from(&mut events, Seen::after(first.pid)).await;
    assert_eq!(rest.stdout, [0xff, 0x00, b'\n'], "bytes pass unchanged");
    assert_eq!(rest.end.unwrap().status, "exit status 0");

    // Without stdin: it reads end-of-file at once, and writing is refused.
    let seen =
        to_end(&mut start(&sb, &ProcessRequest { cmd: "cat".into(), ..Default::default() }).await).await;
    assert_eq!((seen.stdout.len(), seen.end.unwrap().exit_code), (0, 0));
    let mut sleeper = start(&sb, &bash("sleep 30")).await;
    let pid = read(&mut sleeper, |s| s.pid.is_some()).await.pid.unwrap();
    assert_eq!(
        api_code(sb.executor.write_stdin(pid, b"x".to_vec()).await.err().unwrap()),
        ErrorCode::Conflict
    );
    sb.executor.signal_process(pid, ProcessSignal::Kill).await.unwrap();
}

#[tokio::test]
async fn signals_reach_the_whole_tree_and_nothing_escapes() {
    let sb = TestSandbox::start(TEMPLATE).await;
    // A child in a session of its own, ignoring SIGTERM and SIGHUP, that would outlive its
    // parent anywhere else.
    let script = "setsid bash -c 'trap \"\" TERM HUP; exec sleep 1234' & echo started; wait";
    let mut events = start(&sb, &bash(script)).await;
    let first = read(&mut events, |s| s.stdout().contains("started")).await;
    let pid = first.pid.unwrap();
    eventually("the child runs", || sb.processes().iter().any(|p| p.contains("sleep 1234"))).await;
    sb.executor.signal_process(pid, ProcessSignal::Term).await.unwrap();
    let end = to_end_from(&mut events, Seen::after(first.pid)).await.end.unwrap();
    assert_eq!((end.exit_code, end.status.as_str()), (-1, "signal: terminated"));
    eventually("the child is gone with its parent", || {
        !sb.processes().iter().any(|p| p.contains("sleep 1234"))
    })
    .await;

    // SIGINT reaches the foreground command of a script.
    let mut events = start(&sb, &bash("sleep 1000; echo after")).await;
    let pid = read(&mut events, |s| s.pid.is_some()).await.pid;
    eventually("sleep runs", || sb.processes().iter().any(|p| p.contains("sleep 1000"))).await;
    sb.executor.signal_process(pid.unwrap(), ProcessSignal::Int).await.unwrap();
    let end = to_end_from(&mut events, Seen::after(pid)).await.end.unwrap();
    assert_eq!(end.status, "signal: interrupt");
}

#[tokio::test]
async fn a_timeout_kills_and_the_cap_holds() {
    let sb = TestSandbox::with_settings(TEMPLATE, &[("SANDBOX_EXECUTOR_MAX_RUNNING_PROCESSES", "2")]).await;
    let mut req = bash("echo begun; sleep 100");
    req.timeout_ms = 1500;
    let t = Instant::now();
    let seen = to_end(&mut start(&sb, &req).await).await;
    let end = seen.end.as_ref().unwrap();
    assert_eq!((seen.stdout(), end.status.as_str()), ("begun\n".into(), "signal: killed"));
    assert!(end.error.as_deref().unwrap().contains("timeout of 1500 ms"));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let mut a = start(&sb, &bash("sleep 100")).await;
    let mut b = start(&sb, &bash("sleep 100")).await;
    let (pa, pb) = (read(&mut a, |s| s.pid.is_some()).await.pid, read(&mut b, |s| s.pid.is_some()).await.pid);
    let refused = sb.executor.start_process(&bash("true")).await.err().unwrap();
    assert_eq!(api_code(refused), ErrorCode::TooManyProcesses);
    sb.executor.signal_process(pa.unwrap(), ProcessSignal::Kill).await.unwrap();
    to_end_from(&mut a, Seen::after(pa)).await;
    let seen = to_end(&mut start(&sb, &bash("echo room")).await).await;
    assert_eq!(seen.stdout(), "room\n", "an ended process frees its place");
    sb.executor.signal_process(pb.unwrap(), ProcessSignal::Kill).await.unwrap();
    to_end_from(&mut b, Seen::after(pb)).await;
}

#[tokio::test]
async fn a_terminal_runs_an_interactive_shell() {
    let sb = TestSandbox::start(TEMPLATE).await;
    let req = ProcessRequest {
        cmd: "/bin/bash".into(),
        args: vec!["--norc".into(), "-i".into()],
        envs: [("PS1".to_owned(), "prompt> ".to_owned()), ("TERM".to_owned(), "xterm".to_owned())].into(),
        pty: Some(PtySize { cols: 80, rows: 24 }),
        ..Default::default()
    };
    let mut events = start(&sb, &req).await;
    let first = read(&mut events, |s| String::from_utf8_lossy(&s.pty).contains("prompt> ")).await;
    let pid = first.pid.unwrap();
    let typed = |text: &str| sb.executor.write_stdin(pid, text.as_bytes().to_vec());
    typed("[ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size; echo $((6*7))\n").await.unwrap();
    let seen =
        read_on(&mut events, Seen::after(first.pid), |s| String::from_utf8_lossy(&s.pty).contains("42\r\n"))
            .await;
    let text = String::from_utf8_lossy(&seen.pty).into_owned();
    assert!(text.contains("on-a-tty\r\n") && text.contains("24 80\r\n"), "{text:?}");
    assert!(seen.stdout.is_empty() && seen.stderr.is_empty(), "everything goes through the terminal");

    sb.executor.resize_pty(pid, PtySize { cols: 100, rows: 30 }).await.unwrap();
    typed("stty size\n").await.unwrap();
    let seen = read_on(&mut events, Seen::after(first.pid), |s| {
        String::from_utf8_lossy(&s.pty).contains("30 100\r\n")
    })
    .await;
    assert!(seen.end.is_none());
    assert_eq!(sb.executor.process(pid).await.unwrap().pty, Some(PtySize { cols: 100, rows: 30 }));
    // A terminal's input is not closed: Ctrl-D (or exit) ends the shell.
    assert_eq!(api_code(sb.executor.close_stdin(pid).await.err().unwrap()), ErrorCode::Conflict);
    typed("exit 5\n").await.unwrap();
    let end = to_end_from(&mut events, Seen::after(first.pid)).await.end.unwrap();
    assert_eq!(end.status, "exit status 5");

    // Without a terminal there is nothing to resize.
    let mut plain = start(&sb, &bash("sleep 30")).await;
    let pid = read(&mut plain, |s| s.pid.is_some()).await.pid.unwrap();
    let refused = sb.executor.resize_pty(pid, PtySize { cols: 1, rows: 1 }).await.err().unwrap();
    assert_eq!(api_code(refused), ErrorCode::Conflict);
    sb.executor.signal_process(pid, ProcessSignal::Kill).await.unwrap();
}
