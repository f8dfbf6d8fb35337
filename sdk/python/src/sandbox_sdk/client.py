"""The synchronous client: sessions, executions, code contexts and workspace files.

>>> from sandbox_sdk import Client
>>> with Client() as client, client.create_session() as session:
...     print(session.run("print(6 * 7)").stdout)
42
"""

from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager
from typing import IO, Any, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

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
from .errors import ConfigurationError, Conflict
from .models import Execution, FileInfo, UploadInfo

__all__ = ["Client", "Session", "Context", "Files", "ExecutionHandle", "RetryPolicy", "DEFAULT_TEMPLATE"]

T = TypeVar("T")


def _settings(url: Optional[str], api_key: Optional[str]) -> "tuple[str, str]":
    url = url or os.environ.get("SANDBOX_URL")
    api_key = api_key or os.environ.get("SANDBOX_API_KEY")
    if not url:
        raise ConfigurationError("no server URL: set SANDBOX_URL or pass one", code="not_configured")
    if not api_key:
        raise ConfigurationError("no API key: set SANDBOX_API_KEY or pass one", code="not_configured")
    return _core.base_url(url), api_key


def _policy(max_retries: int, retry_policy: Optional[RetryPolicy]) -> RetryPolicy:
    return retry_policy if retry_policy is not None else RetryPolicy(max_retries=max_retries)


class Client:
    """A connection to a sandbox server.

    Args:
        url: the server's base URL (``http://127.0.0.1:8080``); ``$SANDBOX_URL`` when left out.
        api_key: the API key; ``$SANDBOX_API_KEY`` when left out.
        timeout: seconds to wait for an answer to requests other than executions (which wait
            as long as their own timeout needs).
        max_retries: how often a request that failed transiently is retried (see the README's
            "Retries"): session creates and executions with an ``Idempotency-Key`` so that they
            are carried out once, reads on connection errors, and any request the server
            refused with 429 or 503 (after its ``Retry-After``).
        retry_policy: the full retry settings (backoff, caps), instead of ``max_retries``.
        transport: an httpx transport to use instead of the network (tests, proxies).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_policy: Optional[RetryPolicy] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        self.url, api_key = _settings(url, api_key)
        self.retry_policy = _policy(max_retries, retry_policy)
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "sandbox-sdk-python"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP -------------------------------------------------------------------------------

    def _call(self, call: Call[T]) -> T:
        """Send a call, retrying as it allows, and answer its parsed body."""
        with self._open(call, stream=False) as response:
            value = call.parse(response)
        if isinstance(value, Execution):
            value._client = self
        return value

    @contextmanager
    def _open(self, call: Call[Any], *, stream: bool = True) -> Iterator[httpx.Response]:
        """Send a call, retrying as it allows, and yield its successful response (unread when
        ``stream``); error answers raise."""
        retrier = Retrier(self.retry_policy, call, self.url)
        while True:
            try:
                response = self._http.send(call.build(self._http), stream=stream,
                                           follow_redirects=call.follow_redirects)
            except httpx.TransportError as e:
                delay = retrier.after_transport_error(e)
            else:
                if response.status_code < 400:
                    break
                try:
                    response.read()
                except httpx.TransportError as e:
                    delay = retrier.after_transport_error(e)
                else:
                    delay = retrier.after_error(response)
                finally:
                    response.close()
            time.sleep(delay)
        try:
            yield response
        finally:
            response.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request to ``/api/v1{path}`` and answer its JSON body (``None`` when empty).

        Keyword arguments go to :meth:`httpx.Client.build_request` (``json``, ``params``, ...).
        GETs are retried on transient failures, other requests only when the server refused
        them (429, 503) or could not be reached.
        """
        return self._call(_core.raw_request(method, path, kwargs))

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
    ) -> "Session":
        """Create a session and wait until it runs.

        Args:
            template: ``python-basic``, ``multi-language``, ``python-datascience``, ...
            env_vars: environment variables of its executions.
            timeout: idle timeout in seconds (the template's default when left out).
            cpu, memory, disk: resources (``"1"``, ``"512Mi"``, ``"1Gi"``).
            dependencies: Python packages to install (``"requests==2.31.0"``). They install in
                the background: code run meanwhile waits for them, and is refused
                (``dependencies_failed``) if they did not install; see
                ``dependency_install_status``.
            session_id: a name of your choosing for it.
            idempotency_key: the request's ``Idempotency-Key`` (a new UUID by default; give
                your own to make retries of your own, across processes, create one session).
        """
        call = _core.create_session(
            template, env_vars=env_vars, timeout=timeout, cpu=cpu, memory=memory, disk=disk,
            dependencies=dependencies, session_id=session_id, idempotency_key=idempotency_key,
        )
        return Session(self, self._call(call))

    def get_session(self, session_id: str) -> "Session":
        """One session (``NotFound`` when there is none of that id)."""
        return Session(self, self._call(_core.get_session(session_id)))

    def delete_session(self, session_id: str) -> None:
        """Remove a session, its executions and its workspace (again: no error)."""
        self._call(_core.delete_session(session_id))

    def list_sessions(
        self,
        *,
        status: Optional[str] = None,
        template: Optional[str] = None,
        limit: int = 100,
        offset: int = 0,
    ) -> List["Session"]:
        """The key's sessions, newest first."""
        items = self._call(_core.list_sessions(status, template, limit, offset))
        return [Session(self, item) for item in items]

    # -- executions -------------------------------------------------------------------------

    def execute(
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
        """Run code in a session and answer the finished execution.

        With any callback the output streams (Server-Sent Events) and each callback is called
        as it arrives; a stream that breaks is re-attached where it stopped. Without, one
        request waits for the result, retried with an ``Idempotency-Key`` so that the code runs
        once. ``Session.run`` and ``Context.run`` are the usual way in.
        """
        streaming = on_stdout or on_stderr or on_display
        call = _core.execute_sync(
            session_id, code, language=language, timeout=timeout, context_id=context_id,
            connect_timeout=self._http.timeout.connect, stream=bool(streaming),
            idempotency_key=idempotency_key,
        )
        if not streaming:
            return self._wait(self._call(call))
        stream = ExecutionStream(self.retry_policy, on_stdout=on_stdout, on_stderr=on_stderr,
                                 on_display=on_display, read_timeout=timeout + 60.0)
        return self._follow(stream, call)

    def start(
        self,
        session_id: str,
        code: str,
        *,
        language: Optional[str] = "python",
        timeout: int = 30,
        context_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> "ExecutionHandle":
        """Start code in a session and answer at once with a handle to wait for it, follow its
        output or cancel it (``Session.start`` is the usual way in)."""
        call = _core.start_execution(session_id, code, language=language, timeout=timeout,
                                     context_id=context_id, idempotency_key=idempotency_key)
        return ExecutionHandle(self, self._call(call), timeout=timeout)

    def get_execution(self, execution_id: str) -> Execution:
        """An execution's current state."""
        return self._call(_core.execution_status(execution_id))

    def cancel_execution(self, execution_id: str) -> Execution:
        """Cancel a running execution (it ends ``cancelled``) and answer its state; an ended
        one is answered as it is."""
        return self._call(_core.cancel_execution(execution_id))

    def execution(self, execution_id: str) -> "ExecutionHandle":
        """A handle to an execution started elsewhere (to wait for, follow or cancel it)."""
        return ExecutionHandle(self, {"execution_id": execution_id})

    def _follow(self, stream: ExecutionStream, call: Call[Any]) -> Execution:
        """Follow an execution's events to its result, re-attaching after a break."""
        while True:
            try:
                with self._open(call) as response:
                    for line in response.iter_lines():
                        stream.feed(line)
                        if stream.done:
                            break
            except httpx.TransportError as e:
                time.sleep(stream.after_drop(e, call.where(self.url)))
                call = stream.reattach()
                continue
            break
        execution = stream.outcome()
        if execution is None:
            # The stream ended early: the execution goes on without us; its result is stored.
            assert stream.execution_id is not None
            return self._wait_for(stream.execution_id)
        execution._client = self
        return self._wait(execution)

    def _wait(self, execution: Execution) -> Execution:
        """``execution`` once finished (the server's wait may end first)."""
        return execution if execution.finished else self._wait_for(execution.id)

    def _wait_for(self, execution_id: str, timeout: Optional[float] = None) -> Execution:
        """The execution once finished, asking for its result while it runs."""
        poller = Poller(execution_id, timeout)
        while True:
            try:
                execution = self._call(_core.execution_result(execution_id))
                if execution.finished:
                    return execution
            except Conflict as e:  # servers that answer 409 while it runs
                if e.code != "execution_not_finished":
                    raise
            time.sleep(poller.next_delay())


class ExecutionHandle(HandleFields):
    """An execution started with :meth:`Session.start`: wait for it, follow its output, or
    cancel it. ``id`` is its id."""

    def __init__(self, client: Client, data: Dict[str, Any], timeout: Optional[int] = None) -> None:
        super().__init__(data, timeout)
        self.client = client

    def wait(self, timeout: Optional[float] = None) -> Execution:
        """The finished execution; ``WaitTimeout`` when ``timeout`` seconds pass first (the
        execution goes on)."""
        return self.client._wait_for(self.id, timeout)

    def result(self) -> Execution:
        """Its current state: status ``running`` while it runs, the whole execution once ended."""
        return self.client._call(_core.execution_result(self.id))

    def cancel(self) -> Execution:
        """Cancel it (its processes are killed; it ends ``cancelled``); answers its state."""
        return self.client.cancel_execution(self.id)

    def stream(
        self,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
    ) -> Execution:
        """Follow its output from the start (Server-Sent Events), calling the callbacks as it
        arrives, and answer the finished execution; a broken stream is re-attached."""
        stream = ExecutionStream(
            self.client.retry_policy, execution_id=self.id, on_stdout=on_stdout,
            on_stderr=on_stderr, on_display=on_display, read_timeout=STREAM_READ_TIMEOUT,
        )
        return self.client._follow(stream, _core.follow_execution(self.id, None, STREAM_READ_TIMEOUT))


# The server sends a keep-alive comment every 15 s.
STREAM_READ_TIMEOUT = 60.0


class Session(SessionFields):
    """A sandbox session: a container with a workspace, for executions and code contexts.

    Used as a context manager it is deleted on exit. Fields are as last read from the server
    (:meth:`refresh` reads them again); ``raw`` has the whole answer.
    """

    def __init__(self, client: Client, data: Dict[str, Any]) -> None:
        self.client = client
        self.files = Files(self)
        self._update(data)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def refresh(self) -> "Session":
        """Read the session's state again."""
        self._update(self.client._call(_core.get_session(self.id)))
        return self

    def run(
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
        """Run code and answer the finished execution.

        Without ``context_id`` each run starts from a fresh interpreter (stateless); with it the
        code runs as the next cell of that context. Callbacks stream output as it happens:
        ``on_stdout``/``on_stderr`` get text, ``on_display`` each :class:`Result`.
        A program that fails is not an exception: see ``Execution.status`` and ``.error``.
        """
        return self.client.execute(
            self.id, code, language=None if context_id else language, timeout=timeout,
            context_id=context_id, on_stdout=on_stdout, on_stderr=on_stderr, on_display=on_display,
            idempotency_key=idempotency_key,
        )

    def start(
        self,
        code: str,
        language: str = "python",
        timeout: int = 30,
        *,
        context_id: Optional[str] = None,
        idempotency_key: Optional[str] = None,
    ) -> ExecutionHandle:
        """Start code without waiting: the handle's ``wait(timeout)``, ``stream(on_stdout=...)``
        and ``cancel()`` follow it up."""
        return self.client.start(
            self.id, code, language=None if context_id else language, timeout=timeout,
            context_id=context_id, idempotency_key=idempotency_key,
        )

    def cancel(self, execution_id: str) -> Execution:
        """Cancel one of the session's running executions; answers its state."""
        return self.client.cancel_execution(execution_id)

    def create_context(
        self,
        language: str = "python",
        cwd: Optional[str] = None,
        env_vars: Optional[Mapping[str, str]] = None,
    ) -> "Context":
        """Start a code context: an interpreter whose state persists between runs."""
        return Context(self, self.client._call(_core.create_context(self.id, language, cwd, env_vars)))

    def list_contexts(self) -> List["Context"]:
        """The session's code contexts."""
        return [Context(self, item) for item in self.client._call(_core.list_contexts(self.id))]

    def get_context(self, context_id: str) -> "Context":
        """One code context."""
        return Context(self, self.client._call(_core.get_context(self.id, context_id)))

    def terminate(self) -> None:
        """Stop the sandbox and keep the session's record."""
        self._update(self.client._call(_core.terminate_session(self.id)))

    def delete(self) -> None:
        """Remove the session, its executions and its workspace (again: no error)."""
        self.client.delete_session(self.id)


class Context(ContextFields):
    """A code context: one long-lived interpreter of a session (a notebook kernel)."""

    def __init__(self, session: Session, data: Dict[str, Any]) -> None:
        self.session = session
        self._update(data)

    def run(
        self,
        code: str,
        timeout: int = 30,
        *,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
    ) -> Execution:
        """Run code as the context's next cell; the last expression's value is the main result.

        Raises ``Conflict`` with code ``context_busy`` while another cell runs and
        ``context_lost`` once the interpreter is gone (:meth:`restart` brings it back, empty).
        """
        return self.session.run(
            code, timeout=timeout, context_id=self.id,
            on_stdout=on_stdout, on_stderr=on_stderr, on_display=on_display,
        )

    def start(self, code: str, timeout: int = 30) -> ExecutionHandle:
        """Start a cell without waiting (see :meth:`Session.start`)."""
        return self.session.start(code, timeout=timeout, context_id=self.id)

    def refresh(self) -> "Context":
        """Read the context's state again."""
        self._update(self.session.client._call(_core.get_context(self.session.id, self.id)))
        return self

    def restart(self) -> "Context":
        """Replace the interpreter with a fresh one, as the context was created."""
        call = _core.context_action(self.session.id, self.id, "restart")
        self._update(self.session.client._call(call))
        return self

    def interrupt(self) -> "Context":
        """Interrupt the running cell (``KeyboardInterrupt`` in Python); state is kept."""
        call = _core.context_action(self.session.id, self.id, "interrupt")
        self._update(self.session.client._call(call))
        return self

    def delete(self) -> None:
        """End the interpreter and forget the context."""
        self.session.client._call(_core.delete_context(self.session.id, self.id))


class Files:
    """The session's workspace files (``session.files``). Paths are relative to the workspace."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def _client(self) -> Client:
        return self._session.client

    def list(self, path: str = "", *, limit: Optional[int] = None) -> List[FileInfo]:
        """Every entry below ``path`` (the whole workspace by default), recursively."""
        items = self._client._call(_core.list_files(self._session.id, path, limit))
        return [FileInfo.from_dict(f) for f in items]

    def write(
        self, path: str, data: Uploadable, *, on_progress: Optional[ProgressCallback] = None
    ) -> UploadInfo:
        """Store ``data`` (bytes, text as UTF-8, or a binary file object, streamed) at ``path``.

        Missing directories are created; an existing file is replaced.
        """
        call = _core.upload(self._session.id, path, data, on_progress)
        return UploadInfo.from_dict(self._client._call(call))

    def download(
        self, path: str, dest: IO[bytes], *, on_progress: Optional[ProgressCallback] = None
    ) -> int:
        """Stream the file at ``path`` into ``dest``; answers the number of bytes written."""
        done = 0
        call = _core.download(self._session.id, path)
        with self._client._open(call) as response:
            total = _core.content_length(response)
            try:
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    dest.write(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(done, total)
            except httpx.TransportError as e:
                raise _core.broken(call, self._client.url, e) from e
        return done

    def read(self, path: str, *, on_progress: Optional[ProgressCallback] = None) -> bytes:
        """The content of the file at ``path``."""
        buffer = io.BytesIO()
        self.download(path, buffer, on_progress=on_progress)
        return buffer.getvalue()

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file, or a directory (which must be empty unless ``recursive``)."""
        self._client._call(_core.remove_file(self._session.id, path, recursive))
