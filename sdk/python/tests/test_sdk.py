"""The SDK against a live server: sessions, executions, contexts, rich results, files, errors."""

from __future__ import annotations

import base64
import io
import os
import threading
from typing import List

import pytest

from sandbox_sdk import (
    AuthenticationError,
    Client,
    Conflict,
    ConnectionFailed,
    NotFound,
    Result,
    SandboxError,
    Session,
    ValidationError,
)

from .conftest import TEMPLATE

# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_session_lifecycle(client: Client) -> None:
    session = client.create_session(TEMPLATE, env_vars={"GREETING": "hi"}, timeout=300)
    assert session.status == "running"
    assert session.timeout == 300
    assert client.get_session(session.id).id == session.id
    assert session.id in [s.id for s in client.list_sessions()]
    assert session.run("import os; print(os.environ['GREETING'])").stdout == "hi\n"
    session.delete()
    with pytest.raises(NotFound) as e:
        client.get_session(session.id)
    assert e.value.code == "session_not_found"
    session.delete()  # deleting again is not an error


def test_session_context_manager_deletes(client: Client) -> None:
    with client.create_session(TEMPLATE) as session:
        session_id = session.id
    with pytest.raises(NotFound):
        client.get_session(session_id)


def test_stateless_runs_share_nothing_but_files(session: Session) -> None:
    first = session.run("x = 1\nopen('stateless.txt', 'w').write('kept')\nprint('x is', x)")
    assert first.ok and first.stdout == "x is 1\n" and first.exit_code == 0
    second = session.run("print(open('stateless.txt').read())\nprint(x)")
    assert second.status == "failed"
    assert second.stdout == "kept\n"
    assert second.error is not None and second.error.name == "NameError"


def test_shell_and_handler_return_value(session: Session) -> None:
    shell = session.run("echo $((6 * 7)); exit 3", language="shell")
    assert shell.stdout == "42\n" and shell.exit_code == 3 and shell.status == "failed"
    handler = session.run("def handler(event):\n    return {'n': 42}")
    assert handler.ok and handler.return_value == {"n": 42}


def test_context_keeps_state_and_gives_main_result(session: Session) -> None:
    ctx = session.create_context("python", env_vars={"MODE": "test"})
    try:
        assert ctx.run("import os\nx = 41").ok
        execution = ctx.run("x + 1")
        assert execution.context_id == ctx.id
        main = execution.main_result
        assert main is not None and main.is_main_result and main.text == "42"
        assert execution.text == "42"
        assert ctx.run("print(os.environ['MODE'])").stdout == "test\n"
        assert ctx.refresh().execution_count == 3
        assert ctx.id in [c.id for c in session.list_contexts()]

        ctx.restart()
        after = ctx.run("x")
        assert after.status == "failed" and after.error and after.error.name == "NameError"
    finally:
        ctx.delete()
    with pytest.raises(NotFound) as e:
        session.get_context(ctx.id)
    assert e.value.code == "context_not_found"


def test_context_busy_and_interrupt(session: Session) -> None:
    ctx = session.create_context("python")
    try:
        ctx.run("state = 'kept'")
        outcome: List[object] = []
        started = threading.Event()

        def long_cell() -> None:
            outcome.append(ctx.run("import time\nprint('go', flush=True)\ntime.sleep(60)",
                                   on_stdout=lambda _: started.set()))

        worker = threading.Thread(target=long_cell)
        worker.start()
        assert started.wait(30)
        with pytest.raises(Conflict) as busy:
            ctx.run("1")
        assert busy.value.code == "context_busy" and busy.value.status == 409
        ctx.interrupt()
        worker.join(30)
        interrupted = outcome[0]
        assert getattr(interrupted, "status") == "failed"
        assert getattr(interrupted, "error").name == "KeyboardInterrupt"
        assert ctx.run("state").text == "'kept'"
    finally:
        ctx.delete()


def test_structured_error(session: Session) -> None:
    execution = session.run("def f():\n    return 1 / 0\nf()")
    assert execution.status == "failed" and execution.exit_code == 1
    assert execution.error is not None
    assert execution.error.name == "ZeroDivisionError"
    assert execution.error.value == "division by zero"
    assert "f()" in execution.error.traceback
    assert execution.error_message == "ZeroDivisionError: division by zero"


def test_timeout(session: Session) -> None:
    execution = session.run("import time; time.sleep(10)", timeout=1)
    assert execution.status == "timeout"


def test_streaming_callbacks_and_display(session: Session) -> None:
    stdout: List[str] = []
    stderr: List[str] = []
    displays: List[Result] = []
    code = (
        "import sys, base64\n"
        "class Pic:\n"
        f"    def _repr_png_(self): return base64.b64decode({base64.b64encode(PNG).decode()!r})\n"
        "class Page:\n"
        "    def _repr_html_(self): return '<b>hi</b>'\n"
        "print('out', flush=True)\n"
        "print('err', file=sys.stderr, flush=True)\n"
        "display(Page())\n"
        "display(Pic())\n"
    )
    execution = session.run(code, on_stdout=stdout.append, on_stderr=stderr.append, on_display=displays.append)
    assert execution.ok
    assert "".join(stdout) == execution.stdout == "out\n"
    assert "".join(stderr) == execution.stderr == "err\n"
    assert [d.html for d in displays] == ["<b>hi</b>", None]
    assert displays[1].png == PNG and "image/png" in displays[1].formats
    assert execution.results == displays
    assert not any(r.is_main_result for r in execution.results)


def test_streamed_context_cell_sends_main_result_as_display(session: Session) -> None:
    ctx = session.create_context("python")
    try:
        displays: List[Result] = []
        execution = ctx.run("print('a')\n6 * 7", on_display=displays.append)
        assert execution.stdout == "a\n"
        assert len(displays) == 1 and displays[0].is_main_result and displays[0].text == "42"
    finally:
        ctx.delete()


def test_files_round_trip(session: Session) -> None:
    info = session.files.write("rt/hello.txt", "héllo")
    assert info.path == "rt/hello.txt" and info.size == len("héllo".encode())
    session.files.write("rt/raw.bin", bytes(range(256)))
    session.files.write("rt/from-file.bin", io.BytesIO(b"streamed"))
    assert session.files.read("rt/hello.txt").decode() == "héllo"
    assert session.files.read("rt/raw.bin") == bytes(range(256))
    assert session.files.read("rt/from-file.bin") == b"streamed"
    listing = {f.path: f for f in session.files.list("rt")}
    assert listing["rt/raw.bin"].size == 256 and not listing["rt/raw.bin"].is_dir
    assert session.run("print(open('rt/hello.txt').read())").stdout == "héllo\n"

    session.files.remove("rt/raw.bin")
    with pytest.raises(NotFound) as e:
        session.files.read("rt/raw.bin")
    assert e.value.code == "file_not_found"
    session.files.remove("rt", recursive=True)
    assert not [f for f in session.files.list() if f.path.startswith("rt")]


def test_large_upload_and_download_stream_with_progress(session: Session) -> None:
    data = os.urandom(5 * 1024 * 1024)
    progress: List[tuple] = []
    info = session.files.write("big.bin", io.BytesIO(data), on_progress=lambda d, t: progress.append((d, t)))
    assert info.size == len(data)
    assert progress[-1] == (len(data), len(data)) and len(progress) > 1
    down: List[tuple] = []
    assert session.files.read("big.bin", on_progress=lambda d, t: down.append((d, t))) == data
    assert down[-1] == (len(data), len(data))
    session.files.remove("big.bin")


def test_error_classes(client: Client, session: Session) -> None:
    with pytest.raises(NotFound) as not_found:
        client.get_session("sess_does_not_exist")
    err = not_found.value
    assert err.status == 404 and err.code == "session_not_found"
    assert err.request_id and err.request_id.startswith("req_") and err.message

    session.files.write("full/a.txt", "a")
    with pytest.raises(Conflict) as conflict:
        session.files.remove("full")
    assert conflict.value.status == 409 and conflict.value.code == "directory_not_empty"
    session.files.remove("full", recursive=True)

    with pytest.raises(ValidationError) as invalid:
        session.run("print(1)", timeout=0)
    assert invalid.value.status == 422 and invalid.value.code == "validation_error"
    assert [e.field for e in invalid.value.errors] == ["timeout"]

    with pytest.raises(ValidationError) as template:
        client.create_session("no-such-template")
    assert template.value.code == "template_not_found"
    assert isinstance(template.value, SandboxError)


def test_bad_key_and_unreachable_server() -> None:
    with Client(api_key="not-a-key") as bad:
        with pytest.raises(AuthenticationError) as e:
            bad.list_sessions()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    with Client(url="http://127.0.0.1:9", api_key="k", timeout=5) as nowhere:
        with pytest.raises(ConnectionFailed) as down:
            nowhere.list_sessions()
    assert down.value.status is None and down.value.code == "connection_failed"

