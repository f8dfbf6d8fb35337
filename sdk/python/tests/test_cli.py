"""The ``sandbox`` command, run as a subprocess against the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

from .conftest import TEMPLATE


class Cli:
    """Runs ``sandbox ARGS...`` (as ``python -m sandbox_sdk.cli``) with the server's variables."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.env.pop("SANDBOX_SESSION", None)

    def __call__(self, *args: str, input: Optional[bytes] = None, cwd: Optional[Path] = None,
                 ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sandbox_sdk.cli", *args], input=input, capture_output=True,
            env=self.env, cwd=cwd, timeout=300,
        )

    def json(self, *args: str) -> object:
        done = self("--json", *args)
        assert done.returncode == 0, done.stderr.decode()
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def cli(server_env: Dict[str, str]) -> Cli:
    return Cli(server_env)


@pytest.fixture(scope="module")
def session_id(cli: Cli) -> Iterator[str]:
    created = cli("sessions", "create", "--template", TEMPLATE, "--env", "WHO=cli")
    assert created.returncode == 0, created.stderr.decode()
    sid = created.stdout.decode().strip()
    yield sid
    assert cli("sessions", "delete", sid).returncode == 0


def test_run_streams_a_file(cli: Cli, session_id: str, tmp_path: Path) -> None:
    program = tmp_path / "hello.py"
    program.write_text("import os, sys\nprint('hello', os.environ['WHO'])\n"
                       "print('to stderr', file=sys.stderr)\ndisplay('shown')\n")
    done = cli("run", "--session", session_id, str(program))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == "hello cli\n'shown'\n"
    assert done.stderr.decode() == "to stderr\n"


def test_run_exit_codes(cli: Cli, session_id: str) -> None:
    exits = cli("run", "-s", session_id, "-", input=b"import sys\nprint('bye')\nsys.exit(3)")
    assert exits.returncode == 3 and exits.stdout == b"bye\n"
    raises = cli("run", "-s", session_id, "-", input=b"raise ValueError('bad input')")
    assert raises.returncode == 1 and b"ValueError: bad input" in raises.stderr
    shell = cli("run", "-s", session_id, "-l", "shell", "-", input=b"exit 7")
    assert shell.returncode == 7
    slow = cli("run", "-s", session_id, "--timeout", "1", "-", input=b"import time; time.sleep(10)")
    assert slow.returncode == 124 and b"timed out" in slow.stderr


def test_run_without_session_uses_a_temporary_one(cli: Cli, tmp_path: Path) -> None:
    before = {s["id"] for s in cli.json("sessions", "list")}  # type: ignore[union-attr]
    program = tmp_path / "t.sh"
    program.write_text("echo from shell $((1 + 1))\n")
    done = cli("run", "--template", TEMPLATE, str(program))
    assert done.returncode == 0 and done.stdout == b"from shell 2\n"
    after = {s["id"] for s in cli.json("sessions", "list")}  # type: ignore[union-attr]
    assert after <= before  # the temporary session is gone


def test_json_output(cli: Cli, session_id: str) -> None:
    execution = cli("--json", "run", "-s", session_id, "-", input=b"print(1)\n1/0")
    assert execution.returncode == 1
    body = json.loads(execution.stdout)
    assert body["status"] == "failed" and body["stdout"] == "1\n"
    assert body["error"]["name"] == "ZeroDivisionError"
    session = cli.json("sessions", "get", session_id)
    assert session["id"] == session_id and session["status"] == "running"  # type: ignore[index]
    assert session_id in [s["id"] for s in cli.json("sessions", "list")]  # type: ignore[union-attr]


def test_contexts_keep_state(cli: Cli, session_id: str) -> None:
    ctx = cli.json("contexts", "create", "-s", session_id, "--language", "python")["id"]  # type: ignore[index]
    assert cli("run", "-s", session_id, "-c", ctx, "-", input=b"total = 20").returncode == 0
    shown = cli("run", "-s", session_id, "-c", ctx, "-", input=b"total + 22")
    assert shown.returncode == 0 and shown.stdout == b"42\n"
    listed = cli.json("contexts", "list", "-s", session_id)
    assert [c["execution_count"] for c in listed if c["id"] == ctx] == [2]  # type: ignore[union-attr]
    assert cli("contexts", "delete", "-s", session_id, ctx).returncode == 0
    gone = cli("run", "-s", session_id, "-c", ctx, "-", input=b"total")
    assert gone.returncode == 125 and b"context_not_found" in gone.stderr


def test_files_round_trip_with_progress(cli: Cli, session_id: str, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(data)
    put = cli("files", "put", "-s", session_id, "--progress", str(tmp_path / "big.bin"), "up/")
    assert put.returncode == 0, put.stderr.decode()
    assert b"5.0 MiB/5.0 MiB" in put.stderr
    listing = cli.json("files", "ls", "-s", session_id, "up")
    assert [(f["path"], f["size"]) for f in listing] == [("up/big.bin", len(data))]  # type: ignore[index, union-attr]
    get = cli("files", "get", "-s", session_id, "--progress", "up/big.bin", str(tmp_path / "back.bin"))
    assert get.returncode == 0 and b"5.0 MiB/5.0 MiB" in get.stderr
    assert (tmp_path / "back.bin").read_bytes() == data

    assert cli("files", "put", "-s", session_id, "-", "up/note.txt", input=b"note").returncode == 0
    assert cli("files", "get", "-s", session_id, "up/note.txt", "-").stdout == b"note"
    refused = cli("files", "rm", "-s", session_id, "up")
    assert refused.returncode == 125 and b"directory_not_empty" in refused.stderr
    assert cli("files", "rm", "-s", session_id, "-r", "up").returncode == 0
    assert cli.json("files", "ls", "-s", session_id) == []


def test_errors_are_reported_with_their_code(cli: Cli) -> None:
    missing = cli("sessions", "get", "sess_missing")
    assert missing.returncode == 125
    assert missing.stderr.decode().startswith("sandbox: error: session_not_found:")
    no_session = cli("files", "ls")
    assert no_session.returncode == 125 and b"SANDBOX_SESSION" in no_session.stderr
    usage = cli("sessions", "frobnicate")
    assert usage.returncode == 2
