"""The asynchronous client against the live server: its main paths, retries and re-attachment.

Each test runs its coroutine with ``asyncio.run`` (no pytest plugin needed).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from typing import Any, Awaitable, Callable, List, TypeVar

import pytest

from sandbox_sdk import (
    AsyncClient,
    AsyncSession,
    Conflict,
    NotFound,
    Result,
    RetryPolicy,
    Session,
    ValidationError,
    WaitTimeout,
)

from .conftest import TEMPLATE
from .test_resilience import COUNTED, TICKS, TICKS_ERR, TICKS_OUT, runs
from .transports import AsyncFaultyTransport, Fault, first

FAST = RetryPolicy(max_retries=3, backoff=0.05, max_backoff=0.2)
T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(test())  # type: ignore[arg-type]


def test_session_lifecycle_runs_and_errors() -> None:
    async def test() -> None:
        async with AsyncClient() as client:
            async with client.create_session(TEMPLATE, env_vars={"GREETING": "hi"}) as session:
                assert isinstance(session, AsyncSession) and session.status == "running"
                assert (await client.get_session(session.id)).id == session.id
                assert session.id in [s.id for s in await client.list_sessions()]
                execution = await session.run("import os; print(os.environ['GREETING'])")
                assert execution.ok and execution.stdout == "hi\n"
                failed = await session.run("1 / 0")
                assert failed.status == "failed" and failed.error and failed.error.name == "ZeroDivisionError"
                with pytest.raises(ValidationError):
                    await session.run("print(1)", timeout=0)
                session_id = session.id
            with pytest.raises(NotFound):
                await client.get_session(session_id)
            # Awaited rather than entered: the caller deletes it.
            other = await client.create_session(TEMPLATE)
            await other.delete()

    run(test)


def test_concurrent_runs_contexts_and_files(session: Session) -> None:
    async def test() -> None:
        async with AsyncClient() as client:
            s = await client.get_session(session.id)
            outs = await asyncio.gather(*(s.run(f"print({i} * 2)") for i in range(4)))
            assert [e.stdout for e in outs] == [f"{i * 2}\n" for i in range(4)]

            ctx = await s.create_context("python")
            try:
                await ctx.run("x = 41")
                assert (await ctx.run("x + 1")).text == "42"
                assert (await ctx.refresh()).execution_count == 2
                assert ctx.id in [c.id for c in await s.list_contexts()]
                displays: List[Result] = []
                streamed = await ctx.run("print('a')\nx", on_display=displays.append)
                assert streamed.stdout == "a\n" and displays[0].text == "41"
            finally:
                await ctx.delete()

            info = await s.files.write("async/data.bin", io.BytesIO(bytes(range(256))))
            assert info.size == 256
            assert await s.files.read("async/data.bin") == bytes(range(256))
            assert [f.path for f in await s.files.list("async")] == ["async/data.bin"]
            await s.files.remove("async", recursive=True)
            with pytest.raises(NotFound):
                await s.files.read("async/data.bin")

    run(test)


def test_streaming_start_and_cancel(session: Session) -> None:
    async def test() -> None:
        async with AsyncClient() as client:
            s = await client.get_session(session.id)
            stdout: List[str] = []
            stderr: List[str] = []
            execution = await s.run(TICKS, on_stdout=stdout.append, on_stderr=stderr.append)
            assert "".join(stdout) == execution.stdout == TICKS_OUT and "".join(stderr) == TICKS_ERR

            handle = await s.start(TICKS)
            followed: List[str] = []
            assert (await handle.stream(on_stdout=followed.append)).ok
            assert "".join(followed) == TICKS_OUT

            handle = await s.start("import time; time.sleep(60)", timeout=120)
            with pytest.raises(WaitTimeout):
                await handle.wait(0.3)
            assert (await handle.result()).status == "running"
            cancelled = await handle.cancel()
            assert cancelled.status == "cancelled"
            assert (await handle.wait(10)).status == "cancelled"
            assert (await s.cancel(handle.id)).status == "cancelled"
            assert (await cancelled.acancel()).status == "cancelled"
            with pytest.raises(TypeError):
                cancelled.cancel()  # from an AsyncClient: acancel

    run(test)


def test_retry_with_the_same_key_runs_once(session: Session) -> None:
    path = f"count-{uuid.uuid4().hex[:8]}.txt"

    async def test() -> Any:
        transport = AsyncFaultyTransport(first("POST", "/execute-sync", Fault(drop=True)))
        async with AsyncClient(retry_policy=FAST, transport=transport) as client:
            s = await client.get_session(session.id)
            execution = await s.run(COUNTED.format(path=path))
        sent = transport.matching("POST", "/execute-sync")
        assert len(sent) == 2 and sent[0].headers["idempotency-key"] == sent[1].headers["idempotency-key"]
        assert json.loads(transport.dropped[0])["id"] == execution.id
        return execution

    assert run(test).ok
    assert runs(session, path) == 1
    session.files.remove(path)


def test_cut_stream_is_reattached(session: Session) -> None:
    async def test() -> None:
        transport = AsyncFaultyTransport(first("POST", "/execute-sync", Fault(cut_after=6)))
        stdout: List[str] = []
        async with AsyncClient(retry_policy=FAST, transport=transport) as client:
            s = await client.get_session(session.id)
            execution = await s.run(TICKS, on_stdout=stdout.append)
        assert execution.ok and "".join(stdout) == TICKS_OUT
        reattached = transport.matching("GET", "/stream")
        assert len(reattached) == 1 and int(reattached[0].headers["last-event-id"]) >= 1

    run(test)


def test_conflict_is_raised(session: Session) -> None:
    async def test() -> None:
        async with AsyncClient() as client:
            s = await client.get_session(session.id)
            ctx = await s.create_context("python")
            try:
                handle = await ctx.start("import time; time.sleep(30)", timeout=60)
                await asyncio.sleep(0.3)
                with pytest.raises(Conflict) as busy:
                    await ctx.run("1")
                assert busy.value.code == "context_busy"
                await ctx.interrupt()
                assert (await handle.wait(30)).status == "failed"
            finally:
                await ctx.delete()

    run(test)
