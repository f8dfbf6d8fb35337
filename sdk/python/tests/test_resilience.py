"""Retries, re-attached streams and cancellation against the live server.

A transport between the client and the server (``transports.py``) drops answers after the
server handled the request, refuses requests with 429/503, or cuts event streams; the tests
check what the server did (a workspace file each run appends to) as well as what the client
answered.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Iterator, List

import httpx
import pytest

from sandbox_sdk import (
    Client,
    ConnectionFailed,
    RateLimited,
    RetryPolicy,
    Session,
    WaitTimeout,
)
from sandbox_sdk.models import Execution

from .conftest import TEMPLATE
from .transports import Fault, FaultyTransport, Faults, first

FAST = RetryPolicy(max_retries=3, backoff=0.05, max_backoff=0.2)

COUNTED = "open({path!r}, 'a').write('ran\\n')\nprint('counted', flush=True)"

TICKS = (
    "import sys, time\n"
    "for i in range(8):\n"
    "    print('tick', i, flush=True)\n"
    "    print('tock', i, file=sys.stderr, flush=True)\n"
    "    time.sleep(0.05)\n"
)
TICKS_OUT = "".join(f"tick {i}\n" for i in range(8))
TICKS_ERR = "".join(f"tock {i}\n" for i in range(8))


def faulty_client(faults: Faults, policy: RetryPolicy = FAST) -> "tuple[Client, FaultyTransport]":
    transport = FaultyTransport(faults)
    return Client(retry_policy=policy, transport=transport), transport


@pytest.fixture
def counter(session: Session) -> Iterator[str]:
    """A workspace file the COUNTED code appends a line to each time it runs."""
    path = f"count-{uuid.uuid4().hex[:8]}.txt"
    yield path
    session.files.remove(path)


def runs(session: Session, path: str) -> int:
    return session.files.read(path).decode().count("ran\n")


def test_execute_retried_with_the_same_key_runs_once(session: Session, counter: str) -> None:
    client, transport = faulty_client(first("POST", "/execute-sync", Fault(drop=True)))
    with client:
        execution = client.get_session(session.id).run(COUNTED.format(path=counter))
    assert execution.ok and execution.stdout == "counted\n"
    sent = transport.matching("POST", "/execute-sync")
    assert len(sent) == 2 and len(transport.dropped) == 1
    keys = {r.headers.get("idempotency-key") for r in sent}
    assert len(keys) == 1 and None not in keys
    # The retry answered with what the first request made.
    assert json.loads(transport.dropped[0])["id"] == execution.id
    assert runs(session, counter) == 1


def test_start_retried_with_the_same_key_runs_once(session: Session, counter: str) -> None:
    client, transport = faulty_client(first("POST", "/execute", Fault(drop=True)))
    with client:
        handle = client.get_session(session.id).start(COUNTED.format(path=counter))
        assert handle.wait(30).ok
    sent = transport.matching("POST", "/execute")
    assert len(sent) == 2 and sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]
    assert json.loads(transport.dropped[0])["execution_id"] == handle.id
    assert runs(session, counter) == 1


def test_own_idempotency_key_dedups_separate_calls(session: Session, counter: str) -> None:
    key = f"test-{uuid.uuid4()}"
    first_run = session.run(COUNTED.format(path=counter), idempotency_key=key)
    again = session.run(COUNTED.format(path=counter), idempotency_key=key)
    assert again.id == first_run.id and runs(session, counter) == 1


def test_session_create_retried_with_the_same_key_creates_one(client: Client) -> None:
    faulty, transport = faulty_client(first("POST", "/sessions", Fault(drop=True)))
    before = {s.id for s in client.list_sessions(limit=1000)}
    with faulty:
        session = faulty.create_session(TEMPLATE)
    try:
        sent = transport.matching("POST", "/sessions")
        assert len(sent) == 2 and sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]
        assert json.loads(transport.dropped[0])["id"] == session.id
        created = {s.id for s in client.list_sessions(limit=1000)} - before
        assert created == {session.id}
    finally:
        client.delete_session(session.id)


def test_refusals_are_retried_after_retry_after(session: Session, counter: str) -> None:
    faults = first("POST", "/execute-sync", Fault(status=429, retry_after="1", code="too_many_executions"))
    client, transport = faulty_client(faults)
    with client:
        started = time.monotonic()
        execution = client.get_session(session.id).run(COUNTED.format(path=counter))
        elapsed = time.monotonic() - started
    assert execution.ok and elapsed >= 1.0
    assert len(transport.matching("POST", "/execute-sync")) == 2
    assert runs(session, counter) == 1

    # 502 and 503 too, then the error once the retries are spent.
    client, transport = faulty_client(first("GET", "/sessions/", Fault(status=503, retry_after="0"), times=9))
    with client, pytest.raises(Exception) as refused:
        client.get_session(session.id)
    assert getattr(refused.value, "status") == 503
    assert len(transport.matching("GET", "/sessions/")) == 1 + FAST.max_retries

    client, transport = faulty_client(first("GET", "/sessions", Fault(status=429, retry_after="0")),
                                      RetryPolicy(max_retries=0))
    with client, pytest.raises(RateLimited) as limited:
        client.list_sessions()
    assert limited.value.retry_after == 0 and len(transport.requests) == 1


def test_reads_are_retried_on_connection_errors(session: Session) -> None:
    client, transport = faulty_client(first("GET", "/sessions/", Fault(drop=True), times=2))
    with client:
        assert client.get_session(session.id).id == session.id
    assert len(transport.matching("GET", "/sessions/")) == 3


def test_requests_that_may_have_been_carried_out_are_not_retried(session: Session) -> None:
    # Creating a context is not idempotent and takes no key: a lost answer is an error.
    client, transport = faulty_client(first("POST", "/contexts", Fault(drop=True)))
    with client, pytest.raises(ConnectionFailed) as e:
        client.get_session(session.id).create_context()
    assert e.value.code == "connection_failed" and len(transport.matching("POST", "/contexts")) == 1
    for ctx in session.list_contexts():
        ctx.delete()


def test_cut_stream_is_reattached_without_repeating_output(session: Session) -> None:
    # The POST's stream is cut after 4 events, the re-attached one after 3 more.
    def faults(request: httpx.Request, sent: List[httpx.Request]) -> "Fault | None":
        if request.url.params.get("stream") == "true":
            return Fault(cut_after=4)
        if request.url.path.endswith("/stream") and not any(r.url.path.endswith("/stream") for r in sent):
            return Fault(cut_after=3)
        return None

    client, transport = faulty_client(faults)
    stdout: List[str] = []
    stderr: List[str] = []
    with client:
        execution = client.get_session(session.id).run(TICKS, on_stdout=stdout.append, on_stderr=stderr.append)
    assert execution.ok
    assert "".join(stdout) == execution.stdout == TICKS_OUT
    assert "".join(stderr) == execution.stderr == TICKS_ERR
    reattached = transport.matching("GET", "/stream")
    assert len(reattached) == 2
    last_ids = [int(r.headers["last-event-id"]) for r in reattached]
    assert 0 <= last_ids[0] < last_ids[1]


def test_cut_stream_before_start_is_not_retried(session: Session) -> None:
    # Cut before the started event: whether the code runs is unknown, so it is not sent again.
    client, transport = faulty_client(first("POST", "/execute-sync", Fault(cut_after=0)))
    with client, pytest.raises(ConnectionFailed):
        client.get_session(session.id).run("print(1)", on_stdout=lambda _: None)
    assert len(transport.matching("POST", "/execute-sync")) == 1


def test_start_wait_cancel(session: Session) -> None:
    handle = session.start("import time\nprint('begun', flush=True)\ntime.sleep(60)", timeout=120)
    assert handle.id.startswith("exec_") and handle.session_id == session.id
    with pytest.raises(WaitTimeout) as waited:
        handle.wait(timeout=0.5)
    assert waited.value.code == "wait_timeout" and isinstance(waited.value, TimeoutError)
    running = handle.result()  # its current state while it runs
    assert running.status == "running" and running.id == handle.id and not running.finished
    time.sleep(0.3)

    cancelled = handle.cancel()
    assert cancelled.status == "cancelled" and cancelled.cancelled and cancelled.finished
    assert not cancelled.ok and cancelled.error_message
    assert handle.wait(10).status == "cancelled"
    # Idempotent: an ended execution is answered as it is, through any of the ways in.
    assert session.cancel(handle.id).status == "cancelled"
    assert cancelled.cancel().status == "cancelled"
    finished = session.run("print(1)")
    assert finished.cancel().status == "completed"


def test_execution_cancel_from_another_thread_ends_a_run(session: Session) -> None:
    import threading

    seen: List[str] = []
    outcome: List[Execution] = []
    thread = threading.Thread(target=lambda: outcome.append(
        session.run("import time\nprint('x', flush=True)\ntime.sleep(60)", timeout=120, on_stdout=seen.append)))
    thread.start()
    deadline = time.monotonic() + 30
    while not seen:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    listed = session.client.request("GET", f"/executions/sessions/{session.id}/executions")["items"]
    running = [e for e in listed if e["status"] == "running" and "print('x'" in e["code"]]
    assert len(running) == 1
    session.cancel(running[0]["id"])
    thread.join(30)
    assert outcome and outcome[0].status == "cancelled" and outcome[0].stdout == "x\n"


def test_handle_stream_follows_from_the_start(session: Session) -> None:
    handle = session.start(TICKS)
    time.sleep(0.3)  # some output is produced before anyone follows it
    stdout: List[str] = []
    execution = handle.stream(on_stdout=stdout.append)
    assert execution.ok and "".join(stdout) == TICKS_OUT
    # Again, after the end: the whole output is replayed.
    again: List[str] = []
    assert client_of(session).execution(handle.id).stream(on_stdout=again.append).id == handle.id
    assert "".join(again) == TICKS_OUT


def test_handle_stream_reattaches(session: Session) -> None:
    client, transport = faulty_client(first("GET", "/stream", Fault(cut_after=5), times=2))
    stdout: List[str] = []
    with client:
        handle = client.get_session(session.id).start(TICKS)
        execution = handle.stream(on_stdout=stdout.append)
    assert execution.ok and "".join(stdout) == TICKS_OUT
    assert len(transport.matching("GET", "/stream")) == 3


def test_backoff_policy() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0, max_retry_after=10.0)
    for retry, (low, high) in enumerate([(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.0, 4.0)]):
        delays = [policy.delay(retry) for _ in range(50)]
        assert all(low <= d <= high for d in delays) and len(set(delays)) > 1  # jitter
    assert policy.delay(0, retry_after=7) == 7
    assert policy.delay(0, retry_after=3600) <= 1.0  # past the cap: the backoff


def client_of(session: Session) -> Client:
    return session.client


def test_reattached_stream_with_the_result_alone_gives_the_missed_output() -> None:
    # Past the server's replay window (or on another replica) a re-attached stream has only the
    # result event: the callbacks get the output they missed from it, once.
    from sandbox_sdk._core import ExecutionStream

    stdout: List[str] = []
    stream = ExecutionStream(FAST, on_stdout=stdout.append)
    events = [("started", 0, {"execution_id": "exec_1"}), ("stdout", 1, {"data": "a\n"}),
              ("stdout", 2, {"data": "b\n"})]
    for name, number, data in events:
        for line in (f"event: {name}", f"data: {json.dumps(data)}", f"id: {number}", ""):
            stream.feed(line)
    stream.feed("event: stdout")  # the connection broke inside an event
    assert stream.after_drop(httpx.ReadError("cut"), "test") >= 0
    call = stream.reattach()
    assert call.path == "/executions/exec_1/stream" and call.headers["Last-Event-ID"] == "2"
    stream.feed("data: {\"data\": \"b\\n\"}")
    stream.feed("id: 2")
    stream.feed("")  # replayed: skipped
    result = {"id": "exec_1", "session_id": "s", "status": "completed", "stdout": "a\nb\nc\nd\n"}
    for line in ("event: result", f"data: {json.dumps(result)}", "id: 9", ""):
        stream.feed(line)
    assert stream.done and stdout == ["a\n", "b\n", "c\nd\n"]
    outcome = stream.outcome()
    assert outcome is not None and outcome.stdout == "".join(stdout)
