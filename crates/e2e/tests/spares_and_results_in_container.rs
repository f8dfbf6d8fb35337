//! Pre-started interpreters (spares) and rich display outputs, in real sandbox containers.

use base64::Engine as _;
use futures_util::StreamExt;
use sandbox_core::{ExecutionStatus, Language, WorkspacePath};
use sandbox_e2e::{TestSandbox, exec_request};
use sandbox_executor_client::ByteStream;
use sandbox_protocol::{ContextRequest, DisplayOutput, ExecEvent, ExecResult, FileChangeKind, StreamEvent};
use std::time::{Duration, Instant};

async fn run(sb: &TestSandbox, code: &str) -> ExecResult {
    sb.executor.execute(&exec_request(Language::Python, code, 60)).await.expect("execution answered")
}

/// Waits until a Python spare has been waiting for at least `age` (its interpreter started a
/// little later than the spare: tests allow half a second for that).
async fn spare_ready(sb: &TestSandbox, age: Duration) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spares = sb.executor.spares().await.unwrap();
        if spares.iter().any(|s| s.language == Language::Python && s.age_ms >= age.as_millis() as u64) {
            return;
        }
        assert!(Instant::now() < deadline, "no spare: {spares:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints, last, how long ago the interpreter running the code was started.
const INTERPRETER_AGE: &str = "\nimport os\n\
    ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n\
    print('age', float(open('/proc/uptime').read().split()[0]) - ticks / os.sysconf('SC_CLK_TCK'))\n";

fn interpreter_age(r: &ExecResult) -> f64 {
    let line = r.stdout.lines().rfind(|l| l.starts_with("age ")).unwrap_or_else(|| panic!("{r:?}"));
    line[4..].parse().unwrap()
}

/// Each pre-started interpreter serves one execution: what one execution leaves in memory, in
/// `/tmp`, `/dev/shm` and the process table, the next does not see.
#[tokio::test]
async fn executions_on_spares_see_nothing_of_each_other() {
    let sb = TestSandbox::start("python-basic").await;
    assert!(
        sb.executor.spares().await.unwrap().is_empty(),
        "nothing is pre-started before a language is used"
    );
    run(&sb, "pass").await;
    spare_ready(&sb, Duration::from_secs(1)).await;
    let marks = "import builtins, os, subprocess, sys\n\
                 builtins.MARK = 'left'\nos.environ['MARK'] = 'left'\nsys.modules['mark'] = sys\n\
                 open('/tmp/mark', 'w').write('left')\nopen('/dev/shm/mark', 'w').write('left')\n\
                 subprocess.Popen(['setsid', 'sleep', '303'])\n\
                 subprocess.Popen(['sh', '-c', 'nohup sleep 304 >/dev/null 2>&1 &'])\n";
    let r = run(&sb, &format!("{marks}{INTERPRETER_AGE}")).await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    assert!(interpreter_age(&r) >= 0.5, "it ran on the spare: {r:?}");
    spare_ready(&sb, Duration::from_secs(1)).await;
    assert!(sb.processes().iter().all(|p| !p.contains("sleep 30")), "{:?}", sb.processes());
    let look = "import builtins, os, sys\n\
                procs = [open('/proc/%s/cmdline' % p).read() for p in os.listdir('/proc') if p.isdigit()]\n\
                print(hasattr(builtins, 'MARK'), 'MARK' in os.environ, 'mark' in sys.modules,\n\
                \x20     os.listdir('/tmp'), os.listdir('/dev/shm'), [p for p in procs if 'sleep' in p], len(procs))";
    let r = run(&sb, &format!("{look}{INTERPRETER_AGE}")).await;
    assert!(r.stdout.starts_with("False False False [] [] [] 2\n"), "{r:?}");
    assert!(interpreter_age(&r) >= 0.5, "it ran on the next spare: {r:?}");
}

/// The workspace picture is taken when the code is handed over, not when the interpreter
/// started: what changed while a spare waited is no execution's change.
#[tokio::test]
async fn the_change_list_is_exact_with_a_spare_waiting() {
    let sb = TestSandbox::start("python-basic").await;
    run(&sb, "open('old.txt', 'w').write('1')").await;
    spare_ready(&sb, Duration::from_secs(1)).await;
    let p = |s: &str| WorkspacePath::parse(s).unwrap();
    let body: ByteStream =
        Box::pin(futures_util::stream::once(async { Ok(bytes::Bytes::from_static(b"up")) }));
    sb.executor.write_file(&p("uploaded.txt"), body).await.unwrap();
    let r = run(
        &sb,
        &format!("open('new.txt', 'w').write('n')\nopen('old.txt', 'w').write('22'){INTERPRETER_AGE}"),
    )
    .await;
    assert!(interpreter_age(&r) >= 0.5, "it ran on the spare: {r:?}");
    let changes: Vec<_> = r.files.iter().map(|f| (f.path.as_str(), f.change)).collect();
    assert_eq!(changes, [("new.txt", FileChangeKind::Created), ("old.txt", FileChangeKind::Modified)]);
}

/// A spare has the environment of the request that started it (the session's variables reach
/// an interpreter when it starts, as without spares): a request with other variables gets an
/// interpreter started with its own.
#[tokio::test]
async fn spares_serve_only_requests_with_their_environment() {
    let sb = TestSandbox::start("python-basic").await;
    let with = |team: &str, code: &str| {
        let mut req = exec_request(Language::Python, code, 30);
        req.env = [("TEAM".to_owned(), team.to_owned())].into();
        req
    };
    let code = format!("import os\nprint(os.environ.get('TEAM')){INTERPRETER_AGE}");
    sb.executor.execute(&with("blue", "pass")).await.unwrap();
    // The spare has waited two seconds (its interpreter a little less); one started for the
    // request is a fraction of a second old when its code runs.
    spare_ready(&sb, Duration::from_secs(2)).await;
    let r = sb.executor.execute(&with("blue", &code)).await.unwrap();
    assert!(r.stdout.starts_with("blue\n") && interpreter_age(&r) >= 1.0, "{r:?}");
    spare_ready(&sb, Duration::from_secs(2)).await;
    let r = sb.executor.execute(&with("red", &code)).await.unwrap();
    assert!(r.stdout.starts_with("red\n"), "{r:?}");
    assert!(interpreter_age(&r) < 1.0, "not the spare started for other variables: {r:?}");
}

/// Spares exist only for a while after their language was used: an idle executor is back to
/// itself alone, at its usual size.
#[tokio::test]
async fn spares_are_released_when_idle_and_the_executor_stays_small() {
    let sb = TestSandbox::with_settings("python-basic", &[("SANDBOX_EXECUTOR_SPARE_IDLE_SECS", "1")]).await;
    let alone = sb.processes().len();
    for _ in 0..20 {
        run(&sb, "print(1)").await;
    }
    spare_ready(&sb, Duration::ZERO).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sb.executor.spares().await.unwrap().is_empty() || sb.processes().len() != alone {
        assert!(Instant::now() < deadline, "spares are not released: {:?}", sb.processes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss = sb.executor_rss_mib();
    println!("idle executor RSS after 20 executions, spares released: {rss:.2} MiB");
    assert!(rss <= 10.0, "idle executor RSS {rss} MiB");
}

/// A pooled sandbox can have its interpreter started before its first execution, kept until
/// that execution comes.
/// A spare outlives the thread that started it. Spares start on a blocking thread, and tokio
/// retires an idle one after 10 s; bwrap's `--die-with-parent` follows the spawning thread, so an
/// execution on such a spare was killed with SIGKILL partway ("the sandbox's supervisor ended
/// before it reported").
#[tokio::test]
async fn an_execution_on_a_spare_outlives_the_thread_that_started_the_spare() {
    let sb = TestSandbox::start("python-basic").await;
    assert_eq!(run(&sb, "print(1)").await.stdout, "1\n");
    spare_ready(&sb, Duration::ZERO).await;
    let r = run(&sb, "import time\ntime.sleep(12)\nprint('slept')").await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    assert_eq!(r.stdout, "slept\n");
}

#[tokio::test]
async fn prestarted_spares_wait_for_the_first_execution() {
    let sb = TestSandbox::with_settings(
        "python-basic",
        &[("SANDBOX_EXECUTOR_PRESTART", "python"), ("SANDBOX_EXECUTOR_SPARE_IDLE_SECS", "1")],
    )
    .await;
    spare_ready(&sb, Duration::from_secs(3)).await;
    let r = run(&sb, INTERPRETER_AGE).await;
    assert!(interpreter_age(&r) >= 2.5, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sb.executor.spares().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "once used, the language's spares follow the idle rule");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn png_size(output: &DisplayOutput) -> (u32, u32) {
    let b64 = output.data["image/png"].as_str().expect("base64 text");
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).expect("valid base64");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a frame size")];
    let frame = reader.next_frame(&mut pixels).expect("the image data decodes");
    assert!(pixels.iter().any(|&p| p != pixels[0]), "not a blank image");
    (frame.width, frame.height)
}

fn pngs(r: &ExecResult) -> Vec<&DisplayOutput> {
    r.results.iter().filter(|o| o.data.contains_key("image/png")).collect()
}

#[tokio::test]
async fn rich_results_come_back_from_contexts_and_stateless_executions() {
    let sb = TestSandbox::start("python-datascience").await;
    let ctx = ContextRequest {
        context_id: "nb".into(),
        language: Language::Python,
        cwd: None,
        env: Default::default(),
    };
    sb.executor.create_context(&ctx).await.unwrap();
    let cell = |code: &str| exec_request(Language::Python, code, 120);

    // A figure shown, and one still open when the cell ends: each a PNG, once.
    let code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\nplt.figure()\nplt.bar([1, 2], [3, 4])";
    let r = sb.executor.execute_in("nb", &cell(code)).await.unwrap();
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    let images = pngs(&r);
    assert_eq!(
        images.len(),
        2,
        "{:?}",
        r.results.iter().map(|o| o.data.keys().collect::<Vec<_>>()).collect::<Vec<_>>()
    );
    for image in &images {
        let (w, h) = png_size(image);
        assert!(w > 100 && h > 100, "{w}x{h}");
    }
    let main = r.results.iter().find(|o| o.is_main_result).expect("the bar call's value");
    assert!(main.data["text/plain"].as_str().unwrap().contains("BarContainer"), "{main:?}");

    // A DataFrame as the last value: HTML holding a table, and text.
    let r = sb
        .executor
        .execute_in(
            "nb",
            &cell("import pandas as pd\ndf = pd.DataFrame({'city': ['Oslo', 'Lima'], 'n': [1, 2]})\ndf"),
        )
        .await
        .unwrap();
    let main = r.results.iter().find(|o| o.is_main_result).expect("a main result");
    let html = main.data["text/html"].as_str().unwrap();
    assert!(html.contains("<table") && html.contains("<td>Oslo</td>"), "{html}");
    assert!(main.data["text/plain"].as_str().unwrap().contains("Lima"));

    // Any object with _repr_html_, streamed as an event before the result.
    let code = "class Badge:\n    def _repr_html_(self):\n        return '<span class=\"badge\">ok</span>'\ndisplay(Badge())\n'done'";
    let mut events = Box::pin(sb.executor.execute_events_in("nb", &cell(code)).await.unwrap());
    let mut streamed = Vec::new();
    let result = loop {
        match events.next().await.expect("a result comes last").unwrap() {
            ExecEvent::Display { output } => streamed.push(output),
            ExecEvent::Stream(StreamEvent::Result { result }) => break *result,
            ExecEvent::Stream(_) => {}
        }
    };
    assert_eq!(streamed, result.results, "every display output was streamed as it came");
    assert_eq!(result.results[0].data["text/html"], "<span class=\"badge\">ok</span>");
    assert_eq!(
        (result.results[1].is_main_result, result.results[1].data["text/plain"].as_str()),
        (true, Some("'done'"))
    );

    // Stateless: display() and an open figure; no main result.
    let code = "import pandas as pd, matplotlib.pyplot as plt\ndisplay(pd.DataFrame({'a': [1]}))\nplt.plot([0, 1])\nprint('ok')";
    let r = sb.executor.execute(&exec_request(Language::Python, code, 120)).await.unwrap();
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "ok\n"), "{r:?}");
    assert!(r.results[0].data["text/html"].as_str().unwrap().contains("<table"));
    assert_eq!(pngs(&r).len(), 1);
    png_size(pngs(&r)[0]);
    assert!(r.results.iter().all(|o| !o.is_main_result));

    // A reader of the stream as the control plane reads it today gets the events it knows, and
    // the display outputs in the result.
    let req =
        exec_request(Language::Python, "display({'text/html': '<b>x</b>'}, raw=True)\nprint('after')", 60);
    let events: Vec<StreamEvent> =
        sb.executor.execute_stream(&req).await.unwrap().map(|e| e.unwrap()).collect().await;
    assert!(matches!(events.first(), Some(StreamEvent::Started { .. })), "{events:?}");
    let Some(StreamEvent::Result { result }) = events.last() else { panic!("{events:?}") };
    assert_eq!(
        (result.stdout.as_str(), result.results[0].data["text/html"].as_str()),
        ("after\n", Some("<b>x</b>"))
    );
}

#[tokio::test]
async fn display_outputs_are_capped_with_a_flag() {
    let sb =
        TestSandbox::with_settings("python-datascience", &[("SANDBOX_EXECUTOR_MAX_DISPLAY_BYTES", "100000")])
            .await;
    let code = "import matplotlib.pyplot as plt\nfor i in range(30):\n    plt.figure()\n    plt.plot(range(i + 2))\n    plt.show()\nprint('drew 30')";
    let r = run(&sb, code).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "drew 30\n"), "{r:?}");
    let kept: usize = r.results.iter().map(|o| serde_json::to_vec(o).unwrap().len()).sum();
    assert!(r.results_truncated && !r.results.is_empty() && r.results.len() < 30, "{} kept", r.results.len());
    assert!(kept <= 100_000, "{kept} bytes kept");
    for image in pngs(&r) {
        png_size(image);
    }
    let r = run(&sb, "display('small')").await;
    assert!(!r.results_truncated && r.results.len() == 1, "the cap is per execution");
}

/// The answer comes as soon as the supervisor has reported, before the sandbox has finished
/// tearing down; by then every process of the execution is gone. A child that outlives the
/// program and keeps writing to a workspace file and to stdout has written its last: the answer's
/// stdout holds everything it wrote, the change list sees the file, nothing is written after
/// the answer, and no process of the execution is left.
#[tokio::test]
async fn nothing_of_an_execution_runs_or_writes_after_its_answer() {
    let sb = TestSandbox::start("python-basic").await;
    let baseline = sb.processes();
    // A first execution makes Python wanted: the rounds below each run on a spare.
    assert_eq!(run(&sb, "print(1)").await.stdout, "1\n");
    let code = r#"
import os, time
if os.fork() == 0:
    i = 0
    while True:
        with open("/workspace/orphan.log", "a") as f:
            f.write("%d\n" % i)
        os.write(1, b"child %d\n" % i)
        i += 1
        time.sleep(0.001)
time.sleep(0.3)
os.write(1, b"parent done\n")
"#;
    // The parent writes its line in one call: Python runs unbuffered (`-u`), so `print` would
    // write the text and its newline apart, and a line of the child's could land in between.
    for round in 0..3 {
        spare_ready(&sb, Duration::from_millis(200)).await;
        let _ = std::fs::remove_file(sb.workspace_path("orphan.log"));
        let r = run(&sb, code).await;
        assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
        let log = std::fs::read_to_string(sb.workspace_path("orphan.log")).expect("the child wrote");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let later = std::fs::read_to_string(sb.workspace_path("orphan.log")).unwrap();
        assert_eq!(log, later, "round {round}: the file was written after the answer");
        let in_file = log.lines().count();
        let printed: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("child ")).collect();
        assert!(in_file > 10, "round {round}: the child ran: {in_file} lines");
        // Each round writes the file first, then stdout: the kill may fall in between.
        assert!(
            printed.len() == in_file || printed.len() + 1 == in_file,
            "round {round}: stdout has {} of the child's {in_file} lines",
            printed.len()
        );
        for (i, line) in printed.iter().enumerate() {
            assert_eq!(*line, format!("child {i}"), "round {round}: stdout is whole and in order");
        }
        assert!(r.stdout.contains("parent done\n"));
        assert!(
            r.files.iter().any(|f| f.path.as_str() == "orphan.log"),
            "round {round}: the change list sees the file: {:?}",
            r.files
        );
        assert!(r.metrics.cpu_time_ms > 0.0 && r.metrics.peak_memory_mb > 1.0, "{:?}", r.metrics);
    }
    // Besides the executor, what is left is the next spare: its bwrap, supervisor and runner.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = sb.processes();
        let spares = sb.executor.spares().await.unwrap();
        if after.len() == baseline.len() + 3 * spares.len() {
            break;
        }
        assert!(Instant::now() < deadline, "before {baseline:?}, after {after:?}, spares {spares:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
