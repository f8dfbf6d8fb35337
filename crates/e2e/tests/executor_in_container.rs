//! The executor inside a real, hardened sandbox container, driven over its Unix socket.

use futures_util::StreamExt;
use sandbox_core::{ExecutionStatus, Language, WorkspacePath};
use sandbox_e2e::TestSandbox;
use sandbox_e2e::conformance::{self, Observed};
use sandbox_executor_client::ByteStream;
use sandbox_protocol::{ErrorCode, ExecRequest, ExecResult, ExecutionRecord, FileKind, StreamEvent};
use std::time::{Duration, Instant};

fn request(language: Language, code: &str, timeout_secs: u64) -> ExecRequest {
    sandbox_e2e::exec_request(language, code, timeout_secs)
}

async fn run(sb: &TestSandbox, language: Language, code: &str) -> ExecResult {
    sb.executor.execute(&request(language, code, 20)).await.expect("execution answered")
}

fn bytes(data: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(bytes::Bytes::from_static(data)) }))
}

/// Every case of the corpus, in one sandbox as the REST runner does it (a fresh sandbox after a
/// failure), with the `then_healthy` follow-up.
#[tokio::test]
async fn conformance_corpus_passes_in_a_hardened_container() {
    let mut sb = TestSandbox::start("multi-language").await;
    let mut failures = Vec::new();
    let cases = conformance::cases();
    for case in &cases {
        let mut req = request(case.language.parse().unwrap(), &case.code, case.timeout);
        req.event = case.event.clone();
        let t = Instant::now();
        let r = sb.executor.execute(&req).await.expect("execution answered");
        let mut probs = conformance::check(case, &Observed::of(&r, t.elapsed().as_secs_f64()));
        if probs.is_empty() && case.then_healthy {
            let h = conformance::healthy_case();
            let r2 = run(&sb, Language::Python, &h.code).await;
            let p2 = conformance::check(&h, &Observed::of(&r2, 0.0));
            if !p2.is_empty() {
                probs.push(format!("unhealthy afterwards: {p2:?}"));
            }
        }
        conformance::report(case, &r, &probs, &mut failures);
        if !probs.is_empty() {
            sb = TestSandbox::start("multi-language").await;
        }
    }
    println!("conformance: {}/{} passed", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn memory_bomb_is_reported_as_out_of_memory() {
    let sb = TestSandbox::start("python-basic").await;
    let r = run(&sb, Language::Python, "x = bytearray(2 << 30)\nprint('LEAK')").await;
    assert_eq!(r.status, ExecutionStatus::Crashed, "{r:?}");
    assert!(r.oom_killed);
    assert!(r.error_message.as_deref().unwrap().contains("out of memory"), "{:?}", r.error_message);
    // The executor itself survived and the sandbox still works.
    assert_eq!(run(&sb, Language::Python, "print(1)").await.status, ExecutionStatus::Completed);
}

#[tokio::test]
async fn concurrent_executions_are_isolated_but_share_the_workspace() {
    let sb = TestSandbox::start("python-basic").await;
    let writer = "import os, time\nopen('/tmp/mine', 'w').write('a')\nopen('shared.txt', 'w').write('from a')\n\
                  time.sleep(1.5)\nprint(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n\
                  print(os.path.exists('/tmp/other'))";
    let other = "import os, time\ntime.sleep(0.5)\nopen('/tmp/other', 'w').write('b')\n\
                 print(os.path.exists('/tmp/mine'), open('shared.txt').read())\n\
                 print(sorted(p for p in os.listdir('/proc') if p.isdigit()))";
    let (a, b) = tokio::join!(run(&sb, Language::Python, writer), run(&sb, Language::Python, other));
    assert_eq!((a.status, b.status), (ExecutionStatus::Completed, ExecutionStatus::Completed), "{a:?} {b:?}");
    // Each sees only its own processes (its supervisor as PID 1, and itself) and its own /tmp.
    assert!(a.stdout.starts_with("['1', '2']\nFalse"), "{}", a.stdout);
    assert_eq!(b.stdout, "False from a\n['1', '2']\n");
}

#[tokio::test]
async fn nothing_outlives_an_execution() {
    let sb = TestSandbox::start("python-basic").await;
    let baseline = sb.processes();
    // Background job, nohup, setsid and a double-forked daemon, then a normal exit.
    let code = "nohup sleep 300 >/dev/null 2>&1 &\nsetsid sleep 301 &\n\
                python3 -c 'import os,time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\ntime.sleep(302)' &\n\
                sleep 0.2; echo started";
    let r = run(&sb, Language::Shell, code).await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    // And one that is killed by its timeout while its children run.
    let mut req = request(Language::Shell, "sleep 303 & sleep 304 & wait", 1);
    req.timeout_ms = 1000;
    let t = sb.executor.execute(&req).await.unwrap();
    assert_eq!(t.status, ExecutionStatus::Timeout);
    // Besides the executor, what is left is the spare the executions had started for the next
    // one: its bwrap, supervisor and runner.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = sb.processes();
        let spares = sb.executor.spares().await.unwrap();
        let stray = after.iter().any(|p| p.contains("sleep"));
        if !stray && after.len() == baseline.len() + 3 * spares.len() {
            break;
        }
        assert!(Instant::now() < deadline, "before {baseline:?}, after {after:?}, spares {spares:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn output_streams_before_the_result() {
    let sb = TestSandbox::start("python-basic").await;
    let req = request(
        Language::Python,
        "import time\nfor i in range(3):\n    print('line', i)\n    time.sleep(0.3)\n",
        10,
    );
    let t = Instant::now();
    let mut events = Box::pin(sb.executor.execute_stream(&req).await.unwrap());
    let mut first_output = None;
    let mut text = String::new();
    let mut result = None;
    while let Some(ev) = events.next().await {
        match ev.unwrap() {
            StreamEvent::Stdout { data } => {
                first_output.get_or_insert(t.elapsed());
                text.push_str(&data);
            }
            StreamEvent::Result { result: r } => result = Some((*r, t.elapsed())),
            _ => {}
        }
    }
    let (result, at) = result.expect("a result arrives last");
    assert_eq!(text, "line 0\nline 1\nline 2\n");
    assert_eq!(result.stdout, text);
    assert!(first_output.unwrap() + Duration::from_millis(400) < at, "output was not streamed");
}

#[tokio::test]
async fn results_survive_a_client_that_hangs_up_and_retries_do_not_rerun() {
    let sb = TestSandbox::start("python-basic").await;
    let req = request(
        Language::Python,
        "import time\ntime.sleep(1)\nopen('runs.txt','a').write('x')\nprint('done')",
        10,
    );
    // The caller gives up after 200 ms; the execution carries on.
    let gave_up = tokio::time::timeout(Duration::from_millis(200), sb.executor.execute(&req)).await;
    assert!(gave_up.is_err());
    // Submitting the same id again waits for the same execution instead of running it twice.
    let r = sb.executor.execute(&req).await.unwrap();
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "done\n"));
    let again = sb.executor.execute(&req).await.unwrap();
    assert_eq!(again.finished_at, r.finished_at);
    assert_eq!(std::fs::read_to_string(sb.workspace_path("runs.txt")).unwrap(), "x");
    assert!(matches!(
        sb.executor.execution(&req.execution_id).await.unwrap(),
        Some(ExecutionRecord::Finished { .. })
    ));
    sb.executor.forget(&req.execution_id).await.unwrap();
    assert!(sb.executor.execution(&req.execution_id).await.unwrap().is_none());
}

#[tokio::test]
async fn kill_ends_a_running_execution() {
    let sb = TestSandbox::start("python-basic").await;
    let req = request(Language::Python, "import time\ntime.sleep(60)", 120);
    sb.executor.start(&req).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sb.executor.kill(&req.execution_id).await.unwrap();
    let r = sb.executor.execute(&req).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Cancelled);
    assert_eq!(r.error_message.as_deref(), Some("execution was cancelled on request"));
    assert!(r.metrics.duration_ms < 10_000.0);
}

#[tokio::test]
async fn files_round_trip_and_planted_symlinks_lead_nowhere() {
    let sb = TestSandbox::start("python-basic").await;
    let p = |s: &str| WorkspacePath::parse(s).unwrap();
    let entry = sb.executor.write_file(&p("data/in.txt"), bytes(b"hello\x00\xff")).await.unwrap();
    assert_eq!(entry.size, 7);
    let r = run(
        &sb,
        Language::Python,
        "print(open('data/in.txt','rb').read())\nimport os\n\
        os.symlink('/etc/passwd', 'leak')\nos.symlink('/run/sandbox/executor.sock', 'sock')\n\
        os.symlink('../../../../../etc', 'data/up')\nopen('out.bin','wb').write(bytes(range(256)))",
    )
    .await;
    assert_eq!(r.stdout, "b'hello\\x00\\xff'\n", "{r:?}");
    let created: Vec<_> = r.files.iter().map(|f| f.path.as_str().to_owned()).collect();
    assert_eq!(created, ["data/up", "leak", "out.bin", "sock"]);

    let (size, mut body) = sb.executor.read_file(&p("out.bin")).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!((size, got), (256, (0..=255u8).collect::<Vec<_>>()));
    for escape in ["leak", "sock", "data/up/passwd"] {
        let err = sb.executor.read_file(&p(escape)).await.err().expect("escape refused");
        assert_eq!(err.api_error().unwrap().code, ErrorCode::InvalidPath, "{escape}");
    }
    let err = sb.executor.write_file(&p("data/up/evil"), bytes(b"x")).await.err().unwrap();
    assert_eq!(err.api_error().unwrap().code, ErrorCode::InvalidPath);
    let listing = sb.executor.list_files(&WorkspacePath::root(), true, None).await.unwrap();
    let leak = listing.entries.iter().find(|e| e.path.as_str() == "leak").unwrap();
    assert_eq!(leak.kind, FileKind::Symlink);
    sb.executor.delete(&p("data"), true).await.unwrap();
    assert!(std::path::Path::new("/etc/passwd").exists());
    assert_eq!(
        sb.executor.stat(&p("data")).await.unwrap_err().api_error().unwrap().code,
        ErrorCode::NotFound
    );
}

/// Without the project's seccomp profile, or with Docker's masked /proc, bwrap cannot build its
/// sandbox; the executor must refuse to start rather than run code unprotected.
#[tokio::test]
async fn executor_refuses_to_run_without_a_working_sandbox() {
    let default_seccomp = TestSandbox::start_with(
        "python-basic",
        |_| {},
        |c| {
            let h = c.host_config.as_mut().unwrap();
            h.security_opt = Some(vec!["no-new-privileges".into()]);
        },
    )
    .await;
    let masked_proc = TestSandbox::start_with(
        "python-basic",
        |_| {},
        |c| {
            let h = c.host_config.as_mut().unwrap();
            h.masked_paths = None;
            h.readonly_paths = None;
        },
    )
    .await;
    for (what, outcome) in
        [("Docker's default seccomp profile", default_seccomp), ("masked /proc", masked_proc)]
    {
        let message = outcome.err().unwrap_or_else(|| panic!("started with {what}")).to_string();
        assert!(message.contains("the sandbox does not work here"), "{what}: {message}");
    }
}

/// RLIMIT_NPROC is counted per user in every user namespace up the chain; the executor sets it
/// inside the sandbox's own namespace, so other processes of the sandbox uid elsewhere on the
/// host do not count against an execution.
#[tokio::test]
async fn process_limit_counts_only_the_execution() {
    let sb = TestSandbox::start("python-basic").await;
    let uid = sandbox_protocol::DEFAULT_SANDBOX_UID.to_string();
    let mut others: Vec<_> = (0..100)
        .map(|_| {
            std::process::Command::new("setpriv")
                .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "sleep", "60"])
                .spawn()
                .expect("setpriv runs (tests run as root)")
        })
        .collect();
    let r = run(
        &sb,
        Language::Python,
        "import subprocess\nprint(subprocess.run(['echo','forked'],capture_output=True).stdout)",
    )
    .await;
    for c in &mut others {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "b'forked\\n'\n"), "{r:?}");
}

/// Hundreds of executions in one sandbox: each leaves an orphan the executor (the container's
/// PID 1) must collect, or the zombies fill the container's process limit (128) and nothing can
/// start any more.
#[tokio::test]
async fn a_sandbox_runs_hundreds_of_executions_and_leaves_no_zombies() {
    let sb = TestSandbox::start("python-basic").await;
    for i in 0..300 {
        let r = run(&sb, Language::Shell, "true").await;
        assert_eq!(r.status, ExecutionStatus::Completed, "execution {i}: {r:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out =
        std::process::Command::new("docker").args(["top", &sb.id, "-eo", "pid,stat,args"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let zombies: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|s| s.starts_with('Z')))
        .collect();
    assert!(zombies.is_empty(), "zombies left in the container:\n{table}");
}

/// User code runs as the same uid as the supervisor that reports how it ended. It must not be
/// able to write a report of its own into the supervisor's status pipe (or memory) through
/// `/proc`, nor kill the supervisor to make bwrap's status stand for the program's: the
/// execution ends with the program's true status and the CPU time it really used, not
/// `completed` with none.
#[tokio::test]
async fn a_forged_report_and_a_killed_supervisor_change_nothing() {
    let sb = TestSandbox::start("python-basic").await;
    let code = "import os, signal, time\n\
                t = time.process_time()\n\
                while time.process_time() - t < 1.5:\n    pass\n\
                sup = os.getppid()\n\
                leaks = []\n\
                for name, flags in (('fd/4', os.O_WRONLY), ('mem', os.O_RDWR), ('environ', os.O_RDONLY)):\n\
                \x20   try:\n\
                \x20       fd = os.open('/proc/%d/%s' % (sup, name), flags)\n\
                \x20   except OSError:\n\
                \x20       continue\n\
                \x20   leaks.append(name)\n\
                \x20   if name == 'fd/4':\n\
                \x20       os.write(fd, b'{\"exit_code\":0,\"signal\":null,\"cpu_ms\":0.0,\"max_rss_kb\":0}')\n\
                print('LEAK %s' % leaks if leaks else 'BLOCKED', flush=True)\n\
                for target in (sup, 1):\n\
                \x20   os.kill(target, signal.SIGKILL)\n\
                time.sleep(0.5)\n\
                raise SystemExit(3)\n";
    let r = run(&sb, Language::Python, code).await;
    assert!(r.stdout.starts_with("BLOCKED"), "{r:?}");
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, Some(3)), "{r:?}");
    assert!(r.metrics.cpu_time_ms >= 1400.0, "CPU time {} ms", r.metrics.cpu_time_ms);
    assert!(r.metrics.peak_memory_mb > 1.0, "peak memory {} MiB", r.metrics.peak_memory_mb);
}

/// Should the supervisor die all the same (here killed from outside the sandbox), nothing
/// inside can say how the program ended: the execution is `crashed`, never `completed`.
#[tokio::test]
async fn a_supervisor_killed_from_outside_ends_crashed() {
    let sb = TestSandbox::start("python-basic").await;
    let req = request(Language::Python, "import time\nprint('started', flush=True)\ntime.sleep(30)", 60);
    sb.executor.start(&req).await.unwrap();
    // The supervisor, as the container sees it (any process of the sandbox uid there may signal
    // it): the parent of the runner whose sandbox holds the code (a spare's has none yet).
    let kill = "import os, sys, time\n\
                for _ in range(200):\n\
                \x20   for p in filter(str.isdigit, os.listdir('/proc')):\n\
                \x20       try:\n\
                \x20           cmd = open('/proc/%s/cmdline' % p, 'rb').read()\n\
                \x20           running = os.path.exists('/proc/%s/root/sandbox/main.py' % p)\n\
                \x20           parent = int(open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[1])\n\
                \x20       except OSError:\n\
                \x20           continue\n\
                \x20       if cmd.startswith(b'python3\\0-u\\0-B\\0/sandbox/runner.py') and running:\n\
                \x20           os.kill(parent, 9)\n\
                \x20           sys.exit(0)\n\
                \x20   time.sleep(0.05)\n\
                sys.exit('no supervisor found')\n";
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            "-u",
            &sandbox_protocol::DEFAULT_SANDBOX_UID.to_string(),
            &sb.id,
            "python3",
            "-c",
            kill,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = sb.executor.execute(&req).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Crashed, "{r:?}");
    assert!(r.error_message.as_deref().unwrap_or("").contains("supervisor"), "{r:?}");
    assert!(r.metrics.duration_ms < 20_000.0, "{r:?}");
}

/// Processes the program leaves running when it exits are killed with the sandbox; the CPU
/// time they burnt until then still counts.
#[tokio::test]
async fn cpu_time_of_processes_left_behind_counts() {
    let sb = TestSandbox::start("python-basic").await;
    // The child says when it has burnt a second of CPU, and burns on; the program then exits.
    let code = "import os, time\n\
                r, w = os.pipe()\n\
                if os.fork() == 0:\n\
                \x20   while time.process_time() < 1.0:\n\
                \x20       pass\n\
                \x20   os.write(w, b'x')\n\
                \x20   while True:\n\
                \x20       pass\n\
                os.read(r, 1)\n\
                os._exit(0)\n";
    let r = run(&sb, Language::Python, code).await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    assert!(r.metrics.cpu_time_ms >= 1000.0, "CPU time {} ms", r.metrics.cpu_time_ms);
}

/// The session's environment variables are for the user's program. Given to the supervisor,
/// the dynamic loader's variables (`LD_PRELOAD`, `LD_DEBUG_OUTPUT`, ...) would run code or write
/// files in it before its limits are set; `LD_DEBUG_OUTPUT` makes every process the loader
/// starts leave a file named after its pid, so the test sees which processes got them.
#[tokio::test]
async fn session_environment_reaches_only_the_program() {
    let sb = TestSandbox::start("python-basic").await;
    let mut req = request(Language::Python, "import os\nprint(os.getpid(), os.getppid())", 20);
    req.env = [
        ("LD_PRELOAD", "/workspace/evil.so"),
        ("LD_DEBUG", "libs"),
        ("LD_DEBUG_OUTPUT", "/workspace/ld"),
        ("GREETING", "hello"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    req.code.push_str("\nprint(os.environ['GREETING'], os.environ['LD_PRELOAD'])");
    let r = sb.executor.execute(&req).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    let mut lines = r.stdout.lines();
    let pids: Vec<u32> = lines.next().unwrap().split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(lines.next(), Some("hello /workspace/evil.so"), "{r:?}");
    let (program, supervisor) = (pids[0], pids[1]);
    assert!(sb.workspace_path(&format!("ld.{program}")).exists(), "the program gets the variables");
    assert!(
        !sb.workspace_path(&format!("ld.{supervisor}")).exists(),
        "the supervisor (pid {supervisor}) ran with the session's loader variables"
    );
}

/// User code can leave a FIFO where the files API expects a file; a plain open of it waits for
/// a writer forever and would hang the request.
#[tokio::test]
async fn reading_a_fifo_fails_at_once_with_not_a_regular_file() {
    let sb = TestSandbox::start("python-basic").await;
    let r =
        run(&sb, Language::Python, "import os\nos.mkfifo('pipe')\nos.mkdir('dir')\nos.mkfifo('dir/pipe')")
            .await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    for path in ["pipe", "dir/pipe"] {
        let wpath = WorkspacePath::parse(path).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), sb.executor.read_file(&wpath))
            .await
            .expect("the read answers at once")
            .err()
            .expect("a FIFO is refused");
        assert_eq!(err.api_error().unwrap().code, ErrorCode::NotARegularFile, "{path}: {err}");
    }
    // The executor still serves files and runs code.
    assert_eq!(run(&sb, Language::Shell, "echo ok").await.stdout, "ok\n");
}

/// On Kubernetes the container's seccomp profile may be the runtime's default or none at all:
/// the sandbox's own filter must refuse on its own what Docker's default profile refuses. The
/// container here runs unconfined, so only the executor's filter stands between the seccomp
/// cases of the corpus and the kernel.
#[tokio::test]
async fn the_inner_filter_stands_alone_in_an_unconfined_container() {
    let sb = TestSandbox::start_with(
        "multi-language",
        |_| {},
        |c| {
            let h = c.host_config.as_mut().unwrap();
            h.security_opt = Some(vec!["no-new-privileges".into(), "seccomp=unconfined".into()]);
        },
    )
    .await
    .expect("an unconfined sandbox starts");
    let wanted = [
        "py_seccomp_docker_parity",
        "py_socket_families_denied",
        "py_tty_injection_denied",
        "py_ptrace_denied",
        "py_unshare_userns_denied",
        "py_mount_denied",
        "py_report_not_forgeable",
    ];
    let cases: Vec<_> =
        conformance::cases().into_iter().filter(|c| wanted.contains(&c.name.as_str())).collect();
    assert_eq!(cases.len(), wanted.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut req = request(case.language.parse().unwrap(), &case.code, case.timeout);
        req.event = case.event.clone();
        let t = Instant::now();
        let r = sb.executor.execute(&req).await.expect("execution answered");
        let probs = conformance::check(case, &Observed::of(&r, t.elapsed().as_secs_f64()));
        if !probs.is_empty() {
            failures.push(format!("{}: {} (stdout {:?})", case.name, probs.join("; "), r.stdout));
        }
    }
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
}
