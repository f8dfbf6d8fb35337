//! Code contexts in a real, hardened sandbox container, driven over the executor's socket.

use futures_util::StreamExt;
use sandbox_core::{ExecutionStatus, Language, WorkspacePath};
use sandbox_e2e::conformance::{self, Observed};
use sandbox_e2e::{TestSandbox, exec_request};
use sandbox_protocol::{
    ContextInfo, ContextRequest, ContextStatus, ErrorCode, ExecEvent, ExecRequest, ExecResult, StreamEvent,
};
use std::time::{Duration, Instant};

fn context(id: &str, language: Language) -> ContextRequest {
    ContextRequest { context_id: id.into(), language, cwd: None, env: Default::default() }
}

async fn create(sb: &TestSandbox, id: &str, language: Language) -> ContextInfo {
    sb.executor.create_context(&context(id, language)).await.unwrap_or_else(|e| panic!("{id}: {e}"))
}

fn cell_request(language: Language, code: &str, timeout_secs: u64) -> ExecRequest {
    exec_request(language, code, timeout_secs)
}

async fn cell(sb: &TestSandbox, id: &str, language: Language, code: &str) -> ExecResult {
    sb.executor
        .execute_in(id, &cell_request(language, code, 20))
        .await
        .unwrap_or_else(|e| panic!("{code}: {e}"))
}

fn main_text(r: &ExecResult) -> Option<&str> {
    r.results.iter().find(|d| d.is_main_result)?.data.get("text/plain")?.as_str()
}

fn api_code(e: sandbox_executor_client::ClientError) -> ErrorCode {
    e.api_error().unwrap_or_else(|| panic!("not an API error: {e}")).code
}

#[tokio::test]
async fn state_survives_from_one_execution_to_the_next() {
    let sb = TestSandbox::start("multi-language").await;
    sb.executor.mkdir(&WorkspacePath::parse("project/data").unwrap()).await.unwrap();
    let mut py = context("py", Language::Python);
    py.cwd = Some("project".into());
    py.env = [("GREETING".to_owned(), "hello".to_owned())].into();
    let info = sb.executor.create_context(&py).await.unwrap();
    assert_eq!((info.status, info.cwd.as_str()), (ContextStatus::Idle, "/workspace/project"));
    let again = sb.executor.create_context(&py).await.unwrap();
    assert_eq!(again.created_at, info.created_at, "creating a known id again answers with that context");

    let r = cell(
        &sb,
        "py",
        Language::Python,
        "import os, json\ndef twice(x):\n    return 2 * x\nrows = [1, 2, 3]",
    )
    .await;
    assert_eq!(
        (r.status, r.context_id.as_deref(), r.exit_code),
        (ExecutionStatus::Completed, Some("py"), Some(0))
    );
    let r = cell(&sb, "py", Language::Python, "print(os.getcwd(), os.environ['GREETING'])\ntwice(sum(rows))")
        .await;
    assert_eq!((r.stdout.as_str(), main_text(&r)), ("/workspace/project hello\n", Some("12")), "{r:?}");
    let r =
        cell(&sb, "py", Language::Python, "open('data/out.txt', 'w').write('x')\nrows.append(json.dumps(4))")
            .await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    assert_eq!(r.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["project/data/out.txt"]);
    let r = cell(&sb, "py", Language::Python, "rows").await;
    assert_eq!((main_text(&r), r.files.len()), (Some("[1, 2, 3, '4']"), 0), "each cell's own changes only");

    let r = cell(&sb, "py", Language::Python, "x = 1\nrows[10]").await;
    assert_eq!(r.status, ExecutionStatus::Failed);
    let e = r.error.as_ref().expect("a structured error");
    assert_eq!((e.name.as_str(), e.value.as_str()), ("IndexError", "list index out of range"));
    assert!(e.traceback.contains("<cell-5>") && r.stderr.contains("IndexError"), "{r:?}");
    assert_eq!(
        main_text(&cell(&sb, "py", Language::Python, "x").await),
        Some("1"),
        "an exception keeps the state"
    );

    create(&sb, "js", Language::Javascript).await;
    cell(&sb, "js", Language::Javascript, "var total = 0; function add(n) { total += n; return total }")
        .await;
    let r = cell(&sb, "js", Language::Javascript, "add(40); add(2)").await;
    assert_eq!(r.results[0].data.get("application/json"), Some(&serde_json::json!(42)), "{r:?}");
    let r = cell(&sb, "js", Language::Javascript, "undefinedName + 1").await;
    assert_eq!(r.error.as_ref().map(|e| e.name.as_str()), Some("ReferenceError"), "{r:?}");

    create(&sb, "sh", Language::Shell).await;
    cell(&sb, "sh", Language::Shell, "cd project/data && export LEVEL=deep; counter=3").await;
    let r =
        cell(&sb, "sh", Language::Shell, "echo $PWD $LEVEL $counter; sh -c 'echo child sees $LEVEL'").await;
    assert_eq!(r.stdout, "/workspace/project/data deep 3\nchild sees deep\n", "{r:?}");
    let r = cell(&sb, "sh", Language::Shell, "grep nothing /dev/null").await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, Some(1)));

    let all = sb.executor.contexts().await.unwrap();
    let summary: Vec<_> = all.iter().map(|c| (c.context_id.as_str(), c.execution_count)).collect();
    assert_eq!(summary, [("py", 6), ("js", 3), ("sh", 3)]);
    // A retried execution id is answered with its result, not run again.
    let req = cell_request(Language::Python, "rows.append(5)\nlen(rows)", 20);
    let first = sb.executor.execute_in("py", &req).await.unwrap();
    let retry = sb.executor.execute_in("py", &req).await.unwrap();
    assert_eq!((main_text(&first), retry.finished_at), (Some("5"), first.finished_at));
}

#[tokio::test]
async fn a_context_runs_one_execution_at_a_time_and_contexts_run_side_by_side() {
    let sb = TestSandbox::start("python-basic").await;
    create(&sb, "a", Language::Python).await;
    create(&sb, "b", Language::Python).await;
    let slow = cell_request(Language::Python, "import time\ntime.sleep(1.5)\n'a done'", 20);
    let t = Instant::now();
    sb.executor.start_in("a", &slow).await.unwrap();
    let busy = sb.executor.execute_in("a", &cell_request(Language::Python, "1", 20)).await.unwrap_err();
    assert_eq!(api_code(busy), ErrorCode::ContextBusy);
    assert_eq!(
        sb.executor.context("a").await.unwrap().unwrap().running_execution.as_deref(),
        Some(slow.execution_id.as_str())
    );
    let other = cell_request(Language::Python, "import time\ntime.sleep(1.5)\n'b done'", 20);
    let b = sb.executor.execute_in("b", &other);
    let a = sb.executor.execute_in("a", &slow);
    let (a, b) = tokio::join!(a, b);
    assert_eq!((main_text(&a.unwrap()), main_text(&b.unwrap())), (Some("'a done'"), Some("'b done'")));
    assert!(t.elapsed() < Duration::from_millis(2900), "the two contexts ran in parallel: {:?}", t.elapsed());
    // Wrong language, a handler event, an unknown context.
    let js = cell_request(Language::Javascript, "1", 20);
    assert_eq!(api_code(sb.executor.execute_in("a", &js).await.unwrap_err()), ErrorCode::LanguageUnavailable);
    let mut with_event = cell_request(Language::Python, "1", 20);
    with_event.event = Some(serde_json::json!({}));
    assert_eq!(api_code(sb.executor.execute_in("a", &with_event).await.unwrap_err()), ErrorCode::BadRequest);
    let nowhere = cell_request(Language::Python, "1", 20);
    assert_eq!(api_code(sb.executor.execute_in("nope", &nowhere).await.unwrap_err()), ErrorCode::NotFound);

    // Ending a context under a running execution ends that execution, saying why.
    for (id, end) in [("a", "restarted"), ("b", "deleted"), ("c", "killed")] {
        if id == "c" {
            create(&sb, "c", Language::Python).await;
        }
        let req = cell_request(Language::Python, "import time\ntime.sleep(30)", 60);
        sb.executor.start_in(id, &req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        match end {
            "restarted" => {
                assert_eq!(sb.executor.restart_context(id).await.unwrap().status, ContextStatus::Idle)
            }
            "deleted" => sb.executor.delete_context(id).await.unwrap(),
            _ => sb.executor.kill(&req.execution_id).await.unwrap(),
        }
        let r = sb.executor.execute_in(id, &req).await.unwrap();
        let want = if end == "killed" { ExecutionStatus::Cancelled } else { ExecutionStatus::Crashed };
        assert_eq!(r.status, want, "{end}: {r:?}");
        assert!(r.metrics.duration_ms < 10_000.0, "{end}: {r:?}");
        let why = r.error_message.unwrap();
        assert!(why.contains(end) || end == "killed" && why.contains("cancelled on request"), "{end}: {why}");
    }
    assert_eq!(main_text(&cell(&sb, "a", Language::Python, "'fresh'").await), Some("'fresh'"));
    assert!(sb.executor.context("b").await.unwrap().is_none());
    assert_eq!(sb.executor.context("c").await.unwrap().unwrap().status, ContextStatus::Lost);
}

#[tokio::test]
async fn an_interrupt_ends_the_running_cell_and_keeps_the_context() {
    let sb = TestSandbox::start("multi-language").await;
    for (language, setup, long, check) in [
        (
            Language::Python,
            "kept = 'yes'",
            "import time\nprint('waiting', flush=True)\ntime.sleep(60)",
            "kept",
        ),
        (Language::Javascript, "var kept = 'yes'", "console.log('waiting'); for (;;) {}", "kept"),
        (Language::Shell, "kept=yes", "echo waiting; sleep 60; echo not-reached", "echo $kept"),
    ] {
        let id = language.as_str();
        create(&sb, id, language).await;
        cell(&sb, id, language, setup).await;
        let req = cell_request(language, long, 60);
        let mut events = Box::pin(sb.executor.execute_events_in(id, &req).await.unwrap());
        let mut out = String::new();
        while !out.contains("waiting") {
            if let ExecEvent::Stream(StreamEvent::Stdout { data }) = events.next().await.unwrap().unwrap() {
                out.push_str(&data);
            }
        }
        let t = Instant::now();
        // As a user would: interrupt, and again if it did not take (a signal that lands while a
        // shell is still starting a command reaches neither).
        let r = 'interrupted: loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            sb.executor.interrupt_context(id).await.unwrap();
            let wait = tokio::time::timeout(Duration::from_secs(3), async {
                while let Some(ev) = events.next().await {
                    if let ExecEvent::Stream(StreamEvent::Result { result }) = ev.unwrap() {
                        return *result;
                    }
                }
                panic!("the stream ended without a result")
            });
            if let Ok(r) = wait.await {
                break 'interrupted r;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "{language}: not interrupted");
        };
        assert_eq!(r.status, ExecutionStatus::Failed, "{language}: {r:?}");
        assert!(r.stdout.starts_with("waiting") && !r.stdout.contains("not-reached"), "{language}: {r:?}");
        let r = cell(&sb, id, language, check).await;
        assert!(
            r.stdout.contains("yes") || main_text(&r).is_some_and(|t| t.contains("yes")),
            "{language}: {r:?}"
        );
        assert_eq!(sb.executor.context(id).await.unwrap().unwrap().status, ContextStatus::Idle);
    }
}

#[tokio::test]
async fn a_timeout_interrupts_first_and_kills_a_cell_that_will_not_stop() {
    let sb = TestSandbox::start("python-basic").await;
    create(&sb, "c", Language::Python).await;
    cell(&sb, "c", Language::Python, "state = 41").await;
    // Interrupted at the timeout: the context survives.
    let r = sb
        .executor
        .execute_in("c", &cell_request(Language::Python, "import time\ntime.sleep(60)", 1))
        .await
        .unwrap();
    assert_eq!((r.status, r.timed_out), (ExecutionStatus::Timeout, true), "{r:?}");
    assert_eq!(r.error.as_ref().map(|e| e.name.as_str()), Some("KeyboardInterrupt"));
    assert!(r.error_message.as_deref().unwrap().contains("kept its state"), "{r:?}");
    assert_eq!(main_text(&cell(&sb, "c", Language::Python, "state + 1").await), Some("42"));

    // A cell that ignores interrupts: killed after the grace period, and the context is lost.
    let code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass";
    let t = Instant::now();
    let r = sb.executor.execute_in("c", &cell_request(Language::Python, code, 1)).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Timeout, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "1 s timeout + 2 s grace: {:?}", t.elapsed());
    assert!(r.error_message.as_deref().unwrap().contains("did not stop"), "{r:?}");
    let info = sb.executor.context("c").await.unwrap().unwrap();
    assert_eq!(info.status, ContextStatus::Lost);
    assert!(info.message.unwrap().contains("timed out"));
    let lost = sb.executor.execute_in("c", &cell_request(Language::Python, "state", 5)).await.unwrap_err();
    assert_eq!(api_code(lost), ErrorCode::ContextLost, "never a silently fresh interpreter");
    assert_eq!(
        sb.executor.interrupt_context("c").await.map_err(api_code).unwrap_err(),
        ErrorCode::ContextLost
    );
    // Its interpreter is gone: the only runners left are spares'.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let runners =
            sb.processes().iter().filter(|p| p.split_whitespace().nth(1) == Some("python3")).count();
        if runners == sb.executor.spares().await.unwrap().len() {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", sb.processes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A restart brings it back, empty.
    let info = sb.executor.restart_context("c").await.unwrap();
    assert_eq!((info.status, info.restarts, info.execution_count), (ContextStatus::Idle, 1, 0));
    let r = cell(&sb, "c", Language::Python, "state").await;
    assert_eq!(r.error.as_ref().map(|e| e.name.as_str()), Some("NameError"), "{r:?}");

    // The interpreter ending by itself loses the context too (os._exit is no exception).
    let r = cell(&sb, "c", Language::Python, "import os\nos._exit(7)").await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, Some(7)), "{r:?}");
    assert_eq!(sb.executor.context("c").await.unwrap().unwrap().status, ContextStatus::Lost);
}

/// Two contexts see neither each other's processes nor each other's `/tmp`; they share the
/// workspace. Deleting one ends everything it started, however it hid.
#[tokio::test]
async fn contexts_are_isolated_from_each_other_and_leave_nothing_behind() {
    let sb = TestSandbox::start("python-basic").await;
    let baseline = sb.processes().len();
    create(&sb, "one", Language::Python).await;
    create(&sb, "two", Language::Python).await;
    let mark = "import os, subprocess\n\
                open('/tmp/mark-%s' % NAME, 'w').write('x')\n\
                open('shared-%s' % NAME, 'w').write('x')\n\
                subprocess.Popen(['setsid', 'sleep', '301'])\n\
                subprocess.Popen(['sh', '-c', 'nohup sleep 302 >/dev/null 2>&1 &'])\n";
    let look = "import os, time\ntime.sleep(0.3)\n\
                procs = sorted(open('/proc/%s/cmdline' % p).read().replace('\\0', ' ').strip() for p in os.listdir('/proc') if p.isdigit())\n\
                (sorted(os.listdir('/tmp')), sorted(f for f in os.listdir('.') if f.startswith('shared')), procs)";
    for name in ["one", "two"] {
        let r = cell(&sb, name, Language::Python, &format!("NAME = '{name}'\n{mark}")).await;
        assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    }
    for (name, other) in [("one", "two"), ("two", "one")] {
        let r = cell(&sb, name, Language::Python, look).await;
        let seen = main_text(&r).unwrap();
        assert!(
            seen.starts_with(&format!("(['mark-{name}'], ['shared-one', 'shared-two'], ")),
            "{name}: {seen}"
        );
        assert!(!seen.contains(&format!("mark-{other}")), "{name} sees {other}'s /tmp: {seen}");
        assert_eq!(seen.matches("sleep 30").count(), 2, "{name} sees only its own processes: {seen}");
    }
    for name in ["one", "two"] {
        sb.executor.delete_context(name).await.unwrap();
    }
    assert!(sb.executor.context("one").await.unwrap().is_none());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sb.processes();
        let spares = sb.executor.spares().await.unwrap().len();
        if now.iter().all(|p| !p.contains("sleep")) && now.len() == baseline + 3 * spares {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new context starts clean.
    create(&sb, "three", Language::Python).await;
    let seen = main_text(&cell(&sb, "three", Language::Python, look).await).unwrap().to_owned();
    assert!(seen.starts_with("([], ['shared-one', 'shared-two'], ") && !seen.contains("sleep"), "{seen}");
}

#[tokio::test]
async fn contexts_are_limited_and_reclaimed_when_idle() {
    let sb = TestSandbox::with_settings(
        "python-basic",
        &[("SANDBOX_EXECUTOR_MAX_CONTEXTS", "2"), ("SANDBOX_EXECUTOR_CONTEXT_IDLE_TIMEOUT_SECS", "2")],
    )
    .await;
    create(&sb, "a", Language::Python).await;
    create(&sb, "b", Language::Python).await;
    let third = sb.executor.create_context(&context("c", Language::Python)).await.unwrap_err();
    assert_eq!(
        third.api_error().map(|e| (e.code, e.code.http_status())),
        Some((ErrorCode::TooManyContexts, 429))
    );
    cell(&sb, "a", Language::Python, "x = 1").await;
    // Kept busy past the idle timeout: not reclaimed while it runs.
    let r = cell(&sb, "b", Language::Python, "import time\ntime.sleep(3)\n'still here'").await;
    assert_eq!(main_text(&r), Some("'still here'"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let a = sb.executor.context("a").await.unwrap().unwrap();
    assert_eq!(a.status, ContextStatus::Expired, "{a:?}");
    assert!(a.message.unwrap().contains("reclaimed"));
    let gone = sb.executor.execute_in("a", &cell_request(Language::Python, "x", 5)).await.unwrap_err();
    assert_eq!(api_code(gone), ErrorCode::ContextLost);
    // Reclaimed contexts no longer count against the limit.
    create(&sb, "c", Language::Python).await;
    create(&sb, "d", Language::Python).await;
    assert_eq!(api_code(sb.executor.restart_context("a").await.unwrap_err()), ErrorCode::TooManyContexts);
    sb.executor.delete_context("d").await.unwrap();
    assert_eq!(sb.executor.restart_context("a").await.unwrap().status, ContextStatus::Idle);
}

/// CPU time is the cell's own; peak memory is the context's so far.
#[tokio::test]
async fn resources_are_accounted_per_execution() {
    let sb = TestSandbox::start("python-basic").await;
    create(&sb, "c", Language::Python).await;
    let burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass\nbuf = bytearray(150 << 20)";
    let r = cell(&sb, "c", Language::Python, burn).await;
    assert!(r.metrics.cpu_time_ms >= 950.0, "{:?}", r.metrics);
    assert!(r.metrics.peak_memory_mb >= 150.0, "{:?}", r.metrics);
    let r = cell(&sb, "c", Language::Python, "del buf\n1 + 1").await;
    assert!(r.metrics.cpu_time_ms < 500.0, "only this cell's CPU time: {:?}", r.metrics);
    assert!(r.metrics.peak_memory_mb >= 150.0, "the context's peak: {:?}", r.metrics);
}

/// Every case of the corpus runs as a cell of a context of its language (each case in a
/// context of its own, as it would be a sandbox of its own). Handler cases do not apply: a
/// context runs cells, which have no event and return no value; they run stateless instead.
#[tokio::test]
async fn the_conformance_corpus_passes_inside_contexts() {
    let sb = TestSandbox::start("multi-language").await;
    let mut failures = Vec::new();
    let cases = conformance::cases();
    let mut in_contexts = 0;
    for (i, case) in cases.iter().enumerate() {
        let language: Language = case.language.parse().unwrap();
        let mut req = cell_request(language, &case.code, case.timeout);
        let handler = case.code.contains("handler");
        let t = Instant::now();
        let id = format!("case{i}");
        let r = if handler {
            req.event = case.event.clone();
            sb.executor.execute(&req).await.unwrap()
        } else {
            in_contexts += 1;
            create(&sb, &id, language).await;
            sb.executor.execute_in(&id, &req).await.unwrap()
        };
        let mut probs = conformance::check(case, &Observed::of(&r, t.elapsed().as_secs_f64()));
        if probs.is_empty() && case.then_healthy && !handler {
            // In the same context if it survived, else: it says so, and a new one works.
            let h = conformance::healthy_case();
            let status = sb.executor.context(&id).await.unwrap().unwrap().status;
            let target = if status == ContextStatus::Idle && language == Language::Python {
                id.clone()
            } else if status == ContextStatus::Idle {
                create(&sb, &format!("{id}-after"), Language::Python).await;
                format!("{id}-after")
            } else {
                let e = sb.executor.execute_in(&id, &cell_request(language, "1", 10)).await.unwrap_err();
                assert_eq!(api_code(e), ErrorCode::ContextLost, "{}", case.name);
                create(&sb, &format!("{id}-after"), Language::Python).await;
                format!("{id}-after")
            };
            let r2 =
                sb.executor.execute_in(&target, &cell_request(Language::Python, &h.code, 10)).await.unwrap();
            let p2 = conformance::check(&h, &Observed::of(&r2, 0.0));
            if !p2.is_empty() {
                probs.push(format!("unhealthy afterwards: {p2:?}"));
            }
        }
        conformance::report(case, &r, &probs, &mut failures);
        for c in sb.executor.contexts().await.unwrap() {
            sb.executor.delete_context(&c.context_id).await.unwrap();
        }
    }
    println!(
        "conformance in contexts: {in_contexts} cases in contexts, {} handler cases stateless",
        cases.len() - in_contexts
    );
    assert_eq!(cases.len() - in_contexts, 4, "the handler cases");
    assert!(failures.is_empty(), "failing cases:\n{}", failures.join("\n"));
}

/// The executor restarting (here, the whole container) loses every context: they are not
/// known any more, and the control plane marks them lost.
#[tokio::test]
async fn contexts_do_not_outlive_their_executor() {
    let sb = TestSandbox::start("python-basic").await;
    create(&sb, "c", Language::Python).await;
    cell(&sb, "c", Language::Python, "x = 1").await;
    let out = std::process::Command::new("docker").args(["restart", "-t", "1", &sb.id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(30);
    while sb.executor.health().await.is_err() {
        assert!(Instant::now() < deadline, "the executor came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sb.executor.contexts().await.unwrap().is_empty());
    let r = sb.executor.execute_in("c", &cell_request(Language::Python, "x", 5)).await.unwrap_err();
    assert_eq!(api_code(r), ErrorCode::NotFound);
}
