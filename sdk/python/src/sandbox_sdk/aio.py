"""The asynchronous client: the surface of :mod:`sandbox_sdk.client` with ``await``.

>>> import asyncio
>>> from sandbox_sdk import AsyncClient
>>> async def main() -> None:
...     async with AsyncClient() as client, client.create_session() as session:
...         print((await session.run("print(6 * 7)")).stdout)
>>> asyncio.run(main())
42

Requests, retries, stream decoding and parsing are shared with the synchronous client
(``sandbox_sdk._core``); only sending and sleeping differ.
"""

from __future__ import annotations

import asyncio
import io
from contextlib import asynccontextmanager
from typing import (
    IO,
    Any,
    AsyncIterator,
    Awaitable,
    Dict,
    Generator,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

import httpx

from . import _core
from ._core import (
    API_PREFIX,
    CHUNK_SIZE,
    DEFAULT_TEMPLATE,
    Call,
    ContextFields,
    DisplayCallback,
    ExecutionStream,
    HandleFields,
    Poller,
    ProgressCallback,
    Retrier,
    RetryPolicy,
    SessionFields,
    TextCallback,
    Uploadable,
)
from .client import STREAM_READ_TIMEOUT, _policy, _settings
from .errors import Conflict
from .models import Execution, FileInfo, UploadInfo

__all__ = ["AsyncClient", "AsyncSession", "AsyncContext", "AsyncFiles", "AsyncExecutionHandle"]

T = TypeVar("T")
S = TypeVar("S", bound="AsyncSession")


class _Creating(Generic[S]):
    """A session being created: ``await`` it for the session, or ``async with`` it to have the
    session deleted at the end of the block."""

    def __init__(self, pending: Awaitable[S]) -> None:
        self._pending = pending
        self._session: Optional[S] = None

    def __await__(self) -> Generator[Any, None, S]:
        return self._pending.__await__()

    async def __aenter__(self) -> S:
        self._session = await self._pending
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.delete()


class AsyncClient:
    """A connection to a sandbox server, for asyncio; arguments as :class:`~sandbox_sdk.Client`
    (``transport`` is an ``httpx.AsyncBaseTransport``). Use it with ``async with`` or close it
    with ``await client.close()``."""

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_policy: Optional[RetryPolicy] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        self.url, api_key = _settings(url, api_key)
        self.retry_policy = _policy(max_retries, retry_policy)
        self._http = httpx.AsyncClient(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "sandbox-sdk-python"},
            timeout=timeout,
            transport=transport,
        )

    async def close(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- HTTP -------------------------------------------------------------------------------

    async def _call(self, call: Call[T]) -> T:
        async with self._open(call, stream=False) as response:
            value = call.parse(response)
        if isinstance(value, Execution):
            value._client = self
        return value

    @asynccontextmanager
    async def _open(self, call: Call[Any], *, stream: bool = True) -> AsyncIterator[httpx.Response]:
        retrier = Retrier(self.retry_policy, call, self.url)
        while True:
            try:
                response = await self._http.send(call.build(self._http), stream=stream,
                                                 follow_redirects=call.follow_redirects)
            except httpx.TransportError as e:
                delay = retrier.after_transport_error(e)
            else:
                if response.status_code < 400:
                    break
                try:
                    await response.aread()
                except httpx.TransportError as e:
                    delay = retrier.after_transport_error(e)
                else:
                    delay = retrier.after_error(response)
                finally:
                    await response.aclose()
            await asyncio.sleep(delay)
        try:
            yield response
        finally:
            await response.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """As :meth:`Client.request <sandbox_sdk.Client.request>`."""
        return await self._call(_core.raw_request(method, path, kwargs))

    # -- sessions ---------------------------------------------------------------------------

    def create_session(
        self,
        template: str = DEFAULT_TEMPLATE,
        *,
        env_vars: Optional[Mapping[str, str]] = None,
        timeout: Optional[int] = None,
        cpu: Optional[str] = None,
        memory: Optional[str] = None,
        disk: Optional[str] = None,
        dependencies: Optional[Sequence[Union[str, Mapping[str, str]]]] = None,
        session_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> "_Creating[AsyncSession]":
        """Create a session and wait until it runs: ``session = await client.create_session()``,
        or ``async with client.create_session() as session:`` to delete it at the end."""
        call = _core.create_session(
            template, env_vars=env_vars, timeout=timeout, cpu=cpu, memory=memory, disk=disk,
            dependencies=dependencies, session_id=session_id, idempotency_key=idempotency_key,
        )

        async def create() -> AsyncSession:
            return AsyncSession(self, await self._call(call))

        return _Creating(create())

    async def get_session(self, session_id: str) -> "AsyncSession":
        return AsyncSession(self, await self._call(_core.get_session(session_id)))

    async def delete_session(self, session_id: str) -> None:
        await self._call(_core.delete_session(session_id))

    async def list_sessions(
        self,
        *,
        status: Optional[str] = None,
        template: Optional[str] = None,
        limit: int = 100,
        offset: int = 0,
    ) -> List["AsyncSession"]:
        items = await self._call(_core.list_sessions(status, template, limit, offset))
        return [AsyncSession(self, item) for item in items]

    # -- executions -------------------------------------------------------------------------

    async def execute(
        self,
        session_id: str,
        code: str,
        *,
        language: Optional[str] = "python",
        timeout: int = 30,
        context_id: Optional[str] = None,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
        idempotency_key: Optional[str] = None,
    ) -> Execution:
        """As :meth:`Client.execute <sandbox_sdk.Client.execute>` (callbacks are plain
        functions, called from the event loop)."""
        streaming = on_stdout or on_stderr or on_display
        call = _core.execute_sync(
            session_id, code, language=language, timeout=timeout, context_id=context_id,
            connect_timeout=self._http.timeout.connect, stream=bool(streaming),
            idempotency_key=idempotency_key,
        )
        if not streaming:
            return await self._wait(await self._call(call))
        stream = ExecutionStream(self.retry_policy, on_stdout=on_stdout, on_stderr=on_stderr,
                                 on_display=on_display, read_timeout=timeout + 60.0)
        return await self._follow(stream, call)

    async def start(
        self,
        session_id: str,
        code: str,
        *,
        language: Optional[str] = "python",
        timeout: int = 30,
        context_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> "AsyncExecutionHandle":
        call = _core.start_execution(session_id, code, language=language, timeout=timeout,
                                     context_id=context_id, idempotency_key=idempotency_key)
        return AsyncExecutionHandle(self, await self._call(call), timeout=timeout)

    async def get_execution(self, execution_id: str) -> Execution:
        return await self._call(_core.execution_status(execution_id))

    async def cancel_execution(self, execution_id: str) -> Execution:
        return await self._call(_core.cancel_execution(execution_id))

    def execution(self, execution_id: str) -> "AsyncExecutionHandle":
        return AsyncExecutionHandle(self, {"execution_id": execution_id})

    async def _follow(self, stream: ExecutionStream, call: Call[Any]) -> Execution:
        while True:
            try:
                async with self._open(call) as response:
                    async for line in response.aiter_lines():
                        stream.feed(line)
                        if stream.done:
                            break
            except httpx.TransportError as e:
                await asyncio.sleep(stream.after_drop(e, call.where(self.url)))
                call = stream.reattach()
                continue
            break
        execution = stream.outcome()
        if execution is None:
            assert stream.execution_id is not None
            return await self._wait_for(stream.execution_id)
        execution._client = self
        return await self._wait(execution)

    async def _wait(self, execution: Execution) -> Execution:
        return execution if execution.finished else await self._wait_for(execution.id)

    async def _wait_for(self, execution_id: str, timeout: Optional[float] = None) -> Execution:
        poller = Poller(execution_id, timeout)
        while True:
            try:
                execution = await self._call(_core.execution_result(execution_id))
                if execution.finished:
                    return execution
            except Conflict as e:
                if e.code != "execution_not_finished":
                    raise
            await asyncio.sleep(poller.next_delay())


class AsyncExecutionHandle(HandleFields):
    """As :class:`~sandbox_sdk.ExecutionHandle`, with ``await``."""

    def __init__(self, client: AsyncClient, data: Dict[str, Any], timeout: Optional[int] = None) -> None:
        super().__init__(data, timeout)
        self.client = client

    async def wait(self, timeout: Optional[float] = None) -> Execution:
        return await self.client._wait_for(self.id, timeout)

    async def result(self) -> Execution:
        return await self.client._call(_core.execution_result(self.id))

    async def cancel(self) -> Execution:
        return await self.client.cancel_execution(self.id)

    async def stream(
        self,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
    ) -> Execution:
        stream = ExecutionStream(
            self.client.retry_policy, execution_id=self.id, on_stdout=on_stdout,
            on_stderr=on_stderr, on_display=on_display, read_timeout=STREAM_READ_TIMEOUT,
        )
        return await self.client._follow(stream, _core.follow_execution(self.id, None, STREAM_READ_TIMEOUT))


class AsyncSession(SessionFields):
    """As :class:`~sandbox_sdk.Session`, with ``await``; ``async with`` deletes it at the end."""

    def __init__(self, client: AsyncClient, data: Dict[str, Any]) -> None:
        self.client = client
        self.files = AsyncFiles(self)
        self._update(data)

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.delete()

    async def refresh(self) -> "AsyncSession":
        self._update(await self.client._call(_core.get_session(self.id)))
        return self

    async def run(
        self,
        code: str,
        language: str = "python",
        timeout: int = 30,
        *,
        context_id: Optional[str] = None,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
        idempotency_key: Optional[str] = None,
    ) -> Execution:
        return await self.client.execute(
            self.id, code, language=None if context_id else language, timeout=timeout,
            context_id=context_id, on_stdout=on_stdout, on_stderr=on_stderr, on_display=on_display,
            idempotency_key=idempotency_key,
        )

    async def start(
        self,
        code: str,
        language: str = "python",
        timeout: int = 30,
        *,
        context_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> AsyncExecutionHandle:
        return await self.client.start(
            self.id, code, language=None if context_id else language, timeout=timeout,
            context_id=context_id, idempotency_key=idempotency_key,
        )

    async def cancel(self, execution_id: str) -> Execution:
        return await self.client.cancel_execution(execution_id)

    async def create_context(
        self,
        language: str = "python",
        cwd: Optional[str] = None,
        env_vars: Optional[Mapping[str, str]] = None,
    ) -> "AsyncContext":
        data = await self.client._call(_core.create_context(self.id, language, cwd, env_vars))
        return AsyncContext(self, data)

    async def list_contexts(self) -> List["AsyncContext"]:
        return [AsyncContext(self, item) for item in await self.client._call(_core.list_contexts(self.id))]

    async def get_context(self, context_id: str) -> "AsyncContext":
        return AsyncContext(self, await self.client._call(_core.get_context(self.id, context_id)))

    async def terminate(self) -> None:
        self._update(await self.client._call(_core.terminate_session(self.id)))

    async def delete(self) -> None:
        await self.client.delete_session(self.id)


class AsyncContext(ContextFields):
    """As :class:`~sandbox_sdk.Context`, with ``await``."""

    def __init__(self, session: AsyncSession, data: Dict[str, Any]) -> None:
        self.session = session
        self._update(data)

    async def run(
        self,
        code: str,
        timeout: int = 30,
        *,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
    ) -> Execution:
        return await self.session.run(
            code, timeout=timeout, context_id=self.id,
            on_stdout=on_stdout, on_stderr=on_stderr, on_display=on_display,
        )

    async def start(self, code: str, timeout: int = 30) -> AsyncExecutionHandle:
        return await self.session.start(code, timeout=timeout, context_id=self.id)

    async def refresh(self) -> "AsyncContext":
        self._update(await self.session.client._call(_core.get_context(self.session.id, self.id)))
        return self

    async def restart(self) -> "AsyncContext":
        call = _core.context_action(self.session.id, self.id, "restart")
        self._update(await self.session.client._call(call))
        return self

    async def interrupt(self) -> "AsyncContext":
        call = _core.context_action(self.session.id, self.id, "interrupt")
        self._update(await self.session.client._call(call))
        return self

    async def delete(self) -> None:
        await self.session.client._call(_core.delete_context(self.session.id, self.id))


class AsyncFiles:
    """As :class:`~sandbox_sdk.Files`, with ``await`` (``dest`` and file objects given to
    ``write`` are ordinary, blocking files)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self, path: str = "", *, limit: Optional[int] = None) -> List[FileInfo]:
        items = await self._session.client._call(_core.list_files(self._session.id, path, limit))
        return [FileInfo.from_dict(f) for f in items]

    async def write(
        self, path: str, data: Uploadable, *, on_progress: Optional[ProgressCallback] = None
    ) -> UploadInfo:
        call = _core.upload(self._session.id, path, data, on_progress)
        return UploadInfo.from_dict(await self._session.client._call(call))

    async def download(
        self, path: str, dest: IO[bytes], *, on_progress: Optional[ProgressCallback] = None
    ) -> int:
        done = 0
        client = self._session.client
        call = _core.download(self._session.id, path)
        async with client._open(call) as response:
            total = _core.content_length(response)
            try:
                async for chunk in response.aiter_bytes(CHUNK_SIZE):
                    dest.write(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(done, total)
            except httpx.TransportError as e:
                raise _core.broken(call, client.url, e) from e
        return done

    async def read(self, path: str, *, on_progress: Optional[ProgressCallback] = None) -> bytes:
        buffer = io.BytesIO()
        await self.download(path, buffer, on_progress=on_progress)
        return buffer.getvalue()

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self._session.client._call(_core.remove_file(self._session.id, path, recursive))
