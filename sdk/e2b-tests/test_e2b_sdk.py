"""E2B's own Python SDKs (`e2b`, `e2b-code-interpreter`) against this server's E2B-compatible
API, unchanged: E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and E2B_DOMAIN point them here
(scripts/e2b-tests.sh sets them)."""

import base64
import os
import uuid

import httpx
import pytest
from e2b import Sandbox, SandboxQuery
from e2b.exceptions import NotFoundException

API_URL = os.environ["E2B_API_URL"]
SANDBOX_URL = os.environ["E2B_SANDBOX_URL"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def code_sandbox():
    """One code-interpreter sandbox (template `code-interpreter-v1`) for the cells below."""
    owner = f"t-{uuid.uuid4().hex[:8]}"
    from e2b_code_interpreter import Sandbox as CodeSandbox

    sbx = CodeSandbox.create(timeout=600, envs={"GREETING": "héllo"}, metadata={"owner": owner})
    yield sbx
    sbx.kill()


def test_sandbox_lifecycle():
    owner = f"t-{uuid.uuid4().hex[:8]}"
    sbx = Sandbox.create(template="base", timeout=120, metadata={"owner": owner, "suite": "e2b"})
    assert sbx.sandbox_id.isalnum() and sbx.sandbox_id.islower()
    info = sbx.get_info()
    assert info.sandbox_id == sbx.sandbox_id
    assert info.metadata == {"owner": owner, "suite": "e2b"}
    assert info.end_at > info.started_at

    listed = Sandbox.list(query=SandboxQuery(metadata={"owner": owner})).next_items()
    assert [s.sandbox_id for s in listed] == [sbx.sandbox_id]
    assert Sandbox.list(query=SandboxQuery(metadata={"owner": owner + "-other"})).next_items() == []

    again = Sandbox.connect(sbx.sandbox_id)
    again.files.write("connected.txt", "yes")
    assert sbx.files.read("/home/user/connected.txt") == "yes"

    sbx.set_timeout(30)
    shorter = sbx.get_info()
    assert (shorter.end_at - info.started_at).total_seconds() < 120

    assert sbx.is_running()
    assert sbx.kill() is True
    assert Sandbox.kill(sbx.sandbox_id) is False
    with pytest.raises(NotFoundException):
        Sandbox.get_info(sbx.sandbox_id)


def test_files():
    sbx = Sandbox.create(template="base", timeout=120)
    try:
        info = sbx.files.write("/home/user/dir/a.txt", "alpha")
        assert info.path == "/home/user/dir/a.txt"
        assert sbx.files.read("dir/a.txt") == "alpha"
        assert sbx.files.read("/home/user/dir/a.txt", format="bytes") == bytearray(b"alpha")
        from e2b.sandbox.filesystem.filesystem import WriteEntry

        sbx.files.write_files([WriteEntry(path="m/one.txt", data="1"), WriteEntry(path="m/two.bin", data=b"\x00\x01")])
        names = sorted(e.name for e in sbx.files.list("/home/user/m"))
        assert names == ["one.txt", "two.bin"]
        assert sbx.files.exists("m/two.bin")
        assert not sbx.files.exists("m/none")
        assert sbx.files.make_dir("newdir") is True
        assert sbx.files.make_dir("newdir") is False, "an existing directory"
        entries = {e.name: e for e in sbx.files.list("/home/user")}
        assert entries["newdir"].type.value == "dir" and entries["dir"].type.value == "dir"
        sbx.files.remove("m")
        assert not sbx.files.exists("m/one.txt")
        sbx.files.remove("m")  # a missing path is no error
        with pytest.raises(Exception) as e:
            sbx.files.read("missing.txt")
        assert "not" in str(e.value).lower()

        # A signed download URL works without the access token; a tampered one does not.
        url = sbx.download_url("/home/user/dir/a.txt")
        assert httpx.get(url, headers={"E2b-Sandbox-Id": sbx.sandbox_id}).content == b"alpha"
        assert httpx.get(url).content == b"alpha", "found by its signature alone"
        up = sbx.upload_url("/home/user/up.txt")
        r = httpx.post(up, files={"file": ("up.txt", b"uploaded")}, headers={"E2b-Sandbox-Id": sbx.sandbox_id})
        assert r.status_code == 200, r.text
        assert sbx.files.read("up.txt") == "uploaded"
        bad = url.replace("signature=v1_", "signature=v1_x")
        assert httpx.get(bad, headers={"E2b-Sandbox-Id": sbx.sandbox_id}).status_code == 401
    finally:
        sbx.kill()


def test_data_plane_needs_the_sandbox_token():
    a = Sandbox.create(template="base", timeout=120)
    b = Sandbox.create(template="base", timeout=120)
    try:
        a.files.write("secret.txt", "a's")
        token_b = b._envd_access_token
        for headers in (
            {"E2b-Sandbox-Id": a.sandbox_id},
            {"E2b-Sandbox-Id": a.sandbox_id, "X-Access-Token": token_b},
            {"E2b-Sandbox-Id": a.sandbox_id, "X-Access-Token": "0" * 64},
        ):
            assert httpx.get(f"{SANDBOX_URL}/files", params={"path": "secret.txt"}, headers=headers).status_code == 401
            r = httpx.post(
                f"{SANDBOX_URL}/filesystem.Filesystem/ListDir",
                json={"path": "/home/user"},
                headers={**headers, "Connect-Protocol-Version": "1"},
            )
            assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
            r = httpx.post(f"{SANDBOX_URL}/execute", json={"code": "1"}, headers={**headers, "E2b-Sandbox-Port": "49999"})
            assert r.status_code == 401
        # The token alone routes to its own sandbox only.
        r = httpx.get(f"{SANDBOX_URL}/files", params={"path": "secret.txt"}, headers={"X-Access-Token": token_b})
        assert r.status_code == 404
        r = httpx.get(f"{SANDBOX_URL}/files", params={"path": "secret.txt"}, headers={"X-Access-Token": a._envd_access_token})
        assert r.content == b"a's"
        gone = httpx.get(f"{SANDBOX_URL}/health", headers={"E2b-Sandbox-Id": "doesnotexist"})
        assert gone.status_code == 502 and gone.json()["message"] == "The sandbox was not found"
    finally:
        a.kill()
        b.kill()


@pytest.fixture(scope="module")
def base_sandbox():
    """One `base` sandbox, with a sandbox-wide variable, for the commands below."""
    sbx = Sandbox.create(template="base", timeout=600, envs={"FROM_SANDBOX": "s"})
    yield sbx
    sbx.kill()


def test_commands_foreground(base_sandbox):
    from e2b.sandbox.commands.command_handle import CommandExitException

    out, err = [], []
    r = base_sandbox.commands.run(
        "echo out; echo err >&2; echo $FROM_SANDBOX $MINE; pwd",
        envs={"MINE": "m"},
        cwd="/home/user",
        on_stdout=out.append,
        on_stderr=err.append,
    )
    assert r.exit_code == 0
    assert r.stdout == "out\ns m\n/workspace\n" and r.stderr == "err\n"
    assert "".join(out) == r.stdout and "".join(err) == r.stderr
    with pytest.raises(CommandExitException) as e:
        base_sandbox.commands.run("echo failing; exit 3")
    assert e.value.exit_code == 3 and e.value.stdout == "failing\n"
    base_sandbox.files.make_dir("sub")
    assert base_sandbox.commands.run("pwd", cwd="/home/user/sub").stdout == "/workspace/sub\n"


def test_commands_background_stdin_and_kill(base_sandbox):
    h = base_sandbox.commands.run("cat", background=True, stdin=True)
    base_sandbox.commands.send_stdin(h.pid, "typed\n")
    assert h.pid in [p.pid for p in base_sandbox.commands.list()]
    base_sandbox.commands.close_stdin(h.pid)
    r = h.wait()
    assert r.exit_code == 0 and r.stdout == "typed\n"

    sleeper = base_sandbox.commands.run("sleep 600", background=True)
    again = base_sandbox.commands.connect(sleeper.pid)
    assert sleeper.kill() is True
    from e2b.sandbox.commands.command_handle import CommandExitException

    with pytest.raises(CommandExitException) as e:
        again.wait()
    assert e.value.exit_code == -1
    assert sleeper.pid not in [p.pid for p in base_sandbox.commands.list()]
    assert base_sandbox.commands.kill(sleeper.pid) is False, "an ended process is gone"


def test_a_long_command_without_a_timeout(base_sandbox):
    """70 s, past the SDK's default 60 s request timeout: `timeout=0` means none."""
    r = base_sandbox.commands.run("sleep 70; echo done", timeout=0)
    assert r.stdout == "done\n"


def test_files_move_depth_and_watch(base_sandbox):
    fs = base_sandbox.files
    fs.write("w/a/b/deep.txt", "d")
    names = sorted(e.path for e in fs.list("/home/user/w", depth=3))
    assert names == ["/home/user/w/a", "/home/user/w/a/b", "/home/user/w/a/b/deep.txt"]
    moved = fs.rename("w/a/b/deep.txt", "/home/user/w/moved.txt")
    assert moved.path == "/home/user/w/moved.txt" and fs.read("w/moved.txt") == "d"
    assert not fs.exists("w/a/b/deep.txt")

    watcher = fs.watch_dir("/home/user/w", recursive=True)
    try:
        base_sandbox.commands.run("echo new > /workspace/w/new.txt && mkdir -p /workspace/w/a/c && echo x > /workspace/w/a/c/x.txt && rm /workspace/w/moved.txt")
        import time

        seen = []
        deadline = time.time() + 10
        while time.time() < deadline and not {"new.txt", "a/c/x.txt", "moved.txt"} <= {e.name for e in seen}:
            seen += watcher.get_new_events()
            time.sleep(0.2)
        kinds = {(e.name, e.type.name) for e in seen}
        assert ("new.txt", "CREATE") in kinds and ("moved.txt", "REMOVE") in kinds, kinds
        assert ("a/c/x.txt", "CREATE") in kinds, kinds
    finally:
        watcher.stop()


CASES = os.path.join(os.path.dirname(__file__), "..", "..", "conformance", "cases.json")
RUNNERS = {"python": ("py", "python3 -u"), "javascript": ("js", "node"), "shell": ("sh", "bash")}


def corpus(languages):
    """The corpus's cases in `languages` that a command or a cell can run: not handlers, and
    without output caps (those are the native executions')."""
    import json

    return [
        c
        for c in json.load(open(CASES))
        if "handler" not in c["code"] and c["language"] in languages and "stdout_max_bytes" not in c["expect"]
    ]


def problems(case, out, err):
    """What a case's output breaks of its expectations (hostile ones print LEAK when they get out)."""
    e = case["expect"]
    found = [f"stdout lacks {x!r}" for x in e.get("stdout_contains", []) if x not in out]
    found += [f"stdout has {x!r}" for x in e.get("stdout_not_contains", []) if x in out]
    found += [f"stderr lacks {x!r}" for x in e.get("stderr_contains", []) if x not in err]
    if "LEAK" in out:
        found.append("LEAK printed")
    return [f"{case['name']}: {'; '.join(found)}: {out[-300:]!r}"] if found else []


def test_the_conformance_corpus_through_commands():
    """Every program of the corpus that is not a handler, run by `commands.run` as a file: what
    it must and must not print holds there too (hostile ones print LEAK when they get out).
    Output caps are the executions' (a command's output is streamed whole, as E2B's is)."""
    from e2b.exceptions import TimeoutException
    from e2b.sandbox.commands.command_handle import CommandExitException

    cases = corpus(RUNNERS)
    failures = []
    sbx = Sandbox.create(template="base", timeout=600)
    try:
        for case in cases:
            ext, runner = RUNNERS[case["language"]]
            e = case["expect"]
            sbx.files.write(f"case.{ext}", case["code"])
            # `exec`: the program is the process itself, a child of the sandbox's supervisor.
            limit = case.get("timeout", 10)
            try:
                r = sbx.commands.run(f"exec {runner} case.{ext}", timeout=limit if "timeout" in e["status"] else limit + 30)
                out, err = r.stdout, r.stderr
            except CommandExitException as x:
                out, err = x.stdout, x.stderr
            except TimeoutException:
                if "timeout" not in e["status"]:
                    failures.append(f"{case['name']}: timed out")
                out, err = "", ""
            failures += problems(case, out, err)
            if not sbx.is_running():
                failures.append(f"{case['name']}: the sandbox did not survive")
                sbx = Sandbox.create(template="base", timeout=600)
    finally:
        sbx.kill()
    assert not failures, "\n".join(failures)
    assert len(cases) >= 25


def test_run_code_keeps_state(code_sandbox):
    assert code_sandbox.run_code("x = 41").error is None
    ex = code_sandbox.run_code("x + 1")
    assert ex.text == "42"
    ex = code_sandbox.run_code("import os; print(os.environ['GREETING']); x")
    assert "".join(ex.logs.stdout) == "héllo\n", "output comes in chunks as it is written"
    assert ex.text == "41"
    assert ex.execution_count and ex.execution_count >= 3


def test_matplotlib_png(code_sandbox):
    ex = code_sandbox.run_code(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\nplt.show()"
    )
    assert ex.error is None, ex.error
    pngs = [r.png for r in ex.results if r.png]
    assert pngs and base64.b64decode(pngs[0]).startswith(PNG_MAGIC)


def test_dataframe(code_sandbox):
    ex = code_sandbox.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
    assert ex.error is None, ex.error
    main = [r for r in ex.results if r.is_main_result]
    assert len(main) == 1
    assert "<table" in (main[0].html or "")
    assert "a" in main[0].text and "y" in main[0].text


def test_exception(code_sandbox):
    ex = code_sandbox.run_code("def f():\n    return 1 / 0\nf()")
    assert ex.error is not None
    assert ex.error.name == "ZeroDivisionError"
    assert "division by zero" in ex.error.value
    assert "f()" in ex.error.traceback


def test_contexts(code_sandbox):
    ctx = code_sandbox.create_code_context(language="python")
    assert ctx.language == "python" and ctx.cwd == "/home/user"
    code_sandbox.run_code("y = 'mine'", context=ctx)
    assert code_sandbox.run_code("y", context=ctx).text == "'mine'"
    assert code_sandbox.run_code("'y' in globals()").text == "False", "the default context is another"
    assert ctx.id in [c.id for c in code_sandbox.list_code_contexts()]
    code_sandbox.restart_code_context(ctx)
    assert code_sandbox.run_code("'y' in globals()", context=ctx).text == "False"
    code_sandbox.remove_code_context(ctx)
    assert ctx.id not in [c.id for c in code_sandbox.list_code_contexts()]


def test_javascript_context():
    from e2b_code_interpreter import Sandbox as CodeSandbox

    sbx = CodeSandbox.create(template="multi-language", timeout=300)
    try:
        ctx = sbx.create_code_context(language="javascript")
        sbx.run_code("const greet = (n) => `hi ${n}`", context=ctx)
        ex = sbx.run_code("console.log(greet('js'))", context=ctx)
        assert "".join(ex.logs.stdout) == "hi js\n", ex
        assert "".join(sbx.run_code("console.log(1 + 1)", language="js").logs.stdout) == "2\n"
    finally:
        sbx.kill()


def test_the_conformance_corpus_through_run_code():
    """Every program of the corpus that is not a handler, run by `run_code` as a cell of a context
    of its own (as `conformance/run.py --contexts` does through the native API)."""
    from e2b.exceptions import TimeoutException
    from e2b_code_interpreter import Sandbox as CodeSandbox

    languages = {"python": "python", "javascript": "javascript", "shell": "bash"}
    cases = corpus(languages)
    failures = []
    sbx = CodeSandbox.create(template="multi-language", timeout=600)
    try:
        for case in cases:
            e = case["expect"]
            limit = case.get("timeout", 10)
            ctx = sbx.create_code_context(language=languages[case["language"]])
            try:
                ex = sbx.run_code(case["code"], context=ctx, timeout=limit if "timeout" in e["status"] else limit + 30)
                out, err = "".join(ex.logs.stdout), "".join(ex.logs.stderr)
                if ex.error:
                    err += f"{ex.error.name}: {ex.error.value}\n{ex.error.traceback}"
            except TimeoutException:
                if "timeout" not in e["status"]:
                    failures.append(f"{case['name']}: timed out")
                out, err = "", ""
            failures += problems(case, out, err)
            try:
                sbx.remove_code_context(ctx)
            except Exception as gone:  # a context a hostile cell took down may be gone already
                if not sbx.is_running():
                    failures.append(f"{case['name']}: the sandbox did not survive ({gone})")
                    sbx = CodeSandbox.create(template="multi-language", timeout=600)
    finally:
        sbx.kill()
    assert not failures, "\n".join(failures)
    assert len(cases) >= 25
