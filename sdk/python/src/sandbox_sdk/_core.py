"""What the synchronous and the asynchronous clients share: everything but the I/O.

Each API operation is described as a :class:`Call` (method, path, body, how it may be retried,
how its answer is parsed) by the functions at the end of this module; :class:`Retrier` decides
after each failed attempt whether and when to try again; :class:`ExecutionStream` decodes
Server-Sent Events, calls the output callbacks once per event and says how to re-attach after a
dropped stream; :class:`Poller` paces waiting for a result. ``client.py`` and ``aio.py`` only
send the requests these describe, with ``time.sleep`` or ``asyncio.sleep`` in between.
"""

from __future__ import annotations

import enum
import io
import json
import random
import re
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import (
    IO,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

import httpx

from .errors import (
    ConnectionFailed,
    SandboxError,
    StreamError,
    WaitTimeout,
    error_from_response,
)
from .models import Execution, Result

T = TypeVar("T")

API_PREFIX = "/api/v1"
CHUNK_SIZE = 256 * 1024
DEFAULT_TEMPLATE = "python-basic"

TextCallback = Callable[[str], None]
DisplayCallback = Callable[[Result], None]
# Called with the bytes moved so far and the total, when known.
ProgressCallback = Callable[[int, Optional[int]], None]
Uploadable = Union[bytes, bytearray, memoryview, str, IO[bytes]]


def quote(path: str) -> str:
    return urllib.parse.quote(path.lstrip("/"), safe="/")


def dependency(spec: Union[str, Mapping[str, str]]) -> Dict[str, str]:
    """``"requests==2.31.0"`` (or a mapping as the API takes it) as ``{"name", "version"}``."""
    if not isinstance(spec, str):
        return dict(spec)
    name, version = re.match(r"\s*([^=<>~!\s]+)\s*(.*?)\s*$", spec).groups()  # type: ignore[union-attr]
    return {"name": name, "version": version} if version else {"name": name}


def base_url(url: Optional[str]) -> str:
    """The server's URL without a trailing ``/`` or ``/api/v1``."""
    url = (url or "").rstrip("/")
    return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url


# -- retries ------------------------------------------------------------------------------------


class Retry(enum.Enum):
    """How a request may be retried."""

    NO = "no"
    """Never (a body that cannot be sent twice)."""
    REFUSED = "refused"
    """Only when it surely was not carried out: no connection was made, or 429/503."""
    ALL = "all"
    """On any transient failure (reads and idempotent requests): connection errors, timeouts,
    429, 502, 503."""
    KEYED = "keyed"
    """As ``ALL``, with an ``Idempotency-Key`` the server deduplicates by; a 409
    ``idempotency_key_in_use`` (the first attempt still runs) is waited out too."""


RETRYABLE_STATUSES = frozenset({429, 502, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """When the clients retry a failed request.

    Args:
        max_retries: retries after the first attempt (0: none).
        backoff: the first delay in seconds without ``Retry-After``; it doubles with each retry,
            up to ``max_backoff``, and a random part of up to half of it is added (jitter).
        max_retry_after: the longest ``Retry-After`` honoured; a longer one (a quota that resets
            in an hour) falls back to the backoff.
        in_use_patience: how long a retry answered 409 ``idempotency_key_in_use`` waits for the
            first attempt to finish, in seconds (at least; executions add their own timeout).
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0
    in_use_patience: float = 120.0

    def delay(self, retry: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        if retry_after is not None and 0 <= retry_after <= self.max_retry_after:
            return retry_after
        step = min(self.max_backoff, self.backoff * (2.0 ** retry))
        return step / 2 + random.uniform(0, step / 2)


@dataclass
class Call(Generic[T]):
    """One API request, described: what to send, how to retry it, how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Optional[Dict[str, Any]] = None
    json: Any = None
    headers: Dict[str, str] = field(default_factory=dict)
    # A fresh body for each attempt (chunks of an upload).
    body: Optional[Callable[[], Iterator[bytes]]] = None
    timeout: Optional[httpx.Timeout] = None
    retry: Retry = Retry.REFUSED
    follow_redirects: bool = False
    # Extra seconds a 409 idempotency_key_in_use is waited out (an execution's own timeout).
    patience: float = 0.0
    extra: Dict[str, Any] = field(default_factory=dict)

    def keyed(self, key: Optional[str] = None) -> "Call[T]":
        """The call with an ``Idempotency-Key`` (a new UUID unless given), retried as such."""
        self.headers["Idempotency-Key"] = key or str(uuid.uuid4())
        self.retry = Retry.KEYED
        return self

    def build(self, http: Union[httpx.Client, httpx.AsyncClient]) -> httpx.Request:
        kwargs: Dict[str, Any] = dict(self.extra)
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        if self.body is not None:
            chunks = self.body()
            kwargs["content"] = _async_chunks(chunks) if isinstance(http, httpx.AsyncClient) else chunks
        return http.build_request(
            self.method, self.path, params=self.params, json=self.json,
            headers=self.headers or None, **kwargs,
        )

    def where(self, base: str) -> str:
        return f"{self.method} {base}{API_PREFIX}{self.path}"


async def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class Retrier:
    """The retry decisions of one call: after each failed attempt, how long to wait before the
    next, or the exception to raise."""

    def __init__(self, policy: RetryPolicy, call: "Call[Any]", base: str) -> None:
        self.policy = policy
        self.call = call
        self.base = base
        self.retries = 0
        self._in_use_since: Optional[float] = None

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        """The delay before the next attempt after ``exc``; raises ``ConnectionFailed`` if none."""
        error = broken(self.call, self.base, exc)
        never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
        kind = self.call.retry
        if kind in (Retry.ALL, Retry.KEYED) or (kind is Retry.REFUSED and never_sent):
            return self._next(error, exc)
        raise error from exc

    def after_error(self, response: httpx.Response) -> float:
        """The delay before the next attempt after an error answer (its body read); raises
        the answer's :class:`SandboxError` if there is none."""
        error = error_from_response(response)
        kind = self.call.retry
        if (kind is Retry.KEYED and error.status == 409 and error.code == "idempotency_key_in_use"
                and self.policy.max_retries > 0):
            now = time.monotonic()
            self._in_use_since = self._in_use_since or now
            if now - self._in_use_since <= self.policy.in_use_patience + self.call.patience:
                return min(error.retry_after or 0.5, 2.0)
            raise error
        status = error.status or 0
        if (kind in (Retry.ALL, Retry.KEYED) and status in RETRYABLE_STATUSES) or (
                kind is Retry.REFUSED and status in (429, 503)):
            return self._next(error, None)
        raise error

    def _next(self, error: SandboxError, cause: Optional[BaseException]) -> float:
        if self.retries >= self.policy.max_retries:
            raise error from cause
        delay = self.policy.delay(self.retries, error.retry_after)
        self.retries += 1
        return delay


def parse_json(response: httpx.Response) -> Any:
    """The JSON body (``None`` when empty)."""
    return response.json() if response.content else None


def parse_execution(response: httpx.Response) -> Execution:
    return Execution.from_dict(response.json())


def parse_nothing(response: httpx.Response) -> None:
    return None


# -- waiting and streaming ----------------------------------------------------------------------


class Poller:
    """The pace of asking for an execution's result: quickly at first, then every half second;
    raises :class:`WaitTimeout` once ``timeout`` seconds have passed."""

    def __init__(self, execution_id: str, timeout: Optional[float] = None) -> None:
        self.execution_id = execution_id
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self._interval = 0.05

    def next_delay(self) -> float:
        delay = self._interval
        self._interval = min(0.5, self._interval * 2)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"execution {self.execution_id} did not finish within {self.timeout:g}s",
                    code="wait_timeout",
                )
            delay = min(delay, left)
        return delay


class ExecutionStream:
    """An execution followed as Server-Sent Events, across re-attachments.

    Feed it the stream's lines: it calls the callbacks once per output event (events replayed
    after a re-attach, already seen, are skipped by id) and keeps the execution's id, the last
    event id and the result. After a dropped connection :meth:`after_drop` says how long to wait
    and :meth:`reattach` which request continues where it stopped. When the result arrives after
    a re-attachment that could not replay everything (the server keeps output for a minute,
    on the replica that ran it), the output the callbacks missed is given to them from it.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        execution_id: Optional[str] = None,
        on_stdout: Optional[TextCallback] = None,
        on_stderr: Optional[TextCallback] = None,
        on_display: Optional[DisplayCallback] = None,
        read_timeout: Optional[float] = None,
    ) -> None:
        self.policy = policy
        self.execution_id = execution_id
        self.on_stdout = on_stdout
        self.on_stderr = on_stderr
        self.on_display = on_display
        self.read_timeout = read_timeout
        self.last_event_id: Optional[int] = None
        self.result: Optional[Execution] = None
        self.error: Optional[Dict[str, Any]] = None
        self.reattachments = 0
        self._drops = 0
        self._stdout: List[str] = []
        self._stderr: List[str] = []
        self._displays = 0
        self._event = "message"
        self._data: List[str] = []
        self._id: Optional[str] = None

    @property
    def done(self) -> bool:
        """Whether the stream gave its last event (``result`` or ``error``)."""
        return self.result is not None or self.error is not None

    def feed(self, line: str) -> None:
        """One line of the stream (without its line break)."""
        if not line:
            if self._data:
                self._dispatch(self._event, "\n".join(self._data), self._id)
            self._event, self._data, self._id = "message", [], None
        elif not line.startswith(":"):  # ":" starts a keep-alive comment
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value

    def _dispatch(self, event: str, text: str, event_id: Optional[str]) -> None:
        number = int(event_id) if event_id and event_id.isdigit() else None
        if event in ("result", "error"):
            data = json.loads(text)
            if event == "result":
                self.result = Execution.from_dict(data)
                self._catch_up(self.result)
            else:
                self.error = data if isinstance(data, dict) else {"message": str(data)}
            return
        if number is not None:
            if self.last_event_id is not None and number <= self.last_event_id:
                return  # seen before the stream was re-attached
            self.last_event_id = number
        self._drops = 0  # progress: the next drop starts its backoff again
        data = json.loads(text)
        if event == "started":
            self.execution_id = data.get("execution_id") or data.get("id") or self.execution_id
        elif event == "stdout":
            self._stdout.append(data.get("data", ""))
            if self.on_stdout:
                self.on_stdout(data.get("data", ""))
        elif event == "stderr":
            self._stderr.append(data.get("data", ""))
            if self.on_stderr:
                self.on_stderr(data.get("data", ""))
        elif event == "display":
            self._displays += 1
            if self.on_display:
                self.on_display(Result.from_dict(data))

    def _catch_up(self, execution: Execution) -> None:
        if not self.reattachments:
            return
        for sent, total, callback in ((self._stdout, execution.stdout, self.on_stdout),
                                      (self._stderr, execution.stderr, self.on_stderr)):
            seen = "".join(sent)
            if callback and len(total) > len(seen) and total.startswith(seen):
                callback(total[len(seen):])
        if self.on_display:
            for result in execution.results[self._displays:]:
                self.on_display(result)

    def after_drop(self, exc: httpx.TransportError, where: str) -> float:
        """The delay before re-attaching after the stream broke; raises if it cannot be."""
        error = ConnectionFailed(f"{where}: the stream broke: {exc or type(exc).__name__}",
                                 code="connection_failed")
        if self.execution_id is None:
            # Not started (as far as we know): retrying could run the code twice.
            raise error from exc
        if self._drops >= self.policy.max_retries:
            raise error from exc
        delay = self.policy.delay(self._drops)
        self._drops += 1
        return delay

    def reattach(self) -> "Call[None]":
        """The request that follows the execution on from the last event received."""
        assert self.execution_id is not None
        self.reattachments += 1
        self._event, self._data, self._id = "message", [], None
        return follow_execution(self.execution_id, self.last_event_id, self.read_timeout)

    def outcome(self) -> Optional[Execution]:
        """The result, once the stream ended; ``None`` when it must be asked for (the stream
        ended without it, or with an ``error`` event: the execution still ends and is stored)."""
        if self.result is not None:
            return self.result
        if self.execution_id is None:
            message = (self.error or {}).get("message") or "the stream ended before the execution started"
            raise StreamError(str(message), code=str((self.error or {}).get("code") or "stream_ended"),
                              body=self.error)
        return None


# -- the calls ----------------------------------------------------------------------------------


def create_session(
    template: str,
    *,
    env_vars: Optional[Mapping[str, str]],
    timeout: Optional[int],
    cpu: Optional[str],
    memory: Optional[str],
    disk: Optional[str],
    dependencies: Optional[Sequence[Union[str, Mapping[str, str]]]],
    session_id: Optional[str],
    idempotency_key: Optional[str],
) -> Call[Dict[str, Any]]:
    body: Dict[str, Any] = {"template_id": template}
    optional = {"env_vars": env_vars, "timeout": timeout, "cpu": cpu, "memory": memory,
                "disk": disk, "id": session_id}
    body.update({k: v for k, v in optional.items() if v is not None})
    if dependencies:
        body["dependencies"] = [dependency(d) for d in dependencies]
    # Packages install in the background: the answer comes once the sandbox runs.
    call: Call[Dict[str, Any]] = Call("POST", "/sessions", parse_json, json=body)
    return call.keyed(idempotency_key)


def get_session(session_id: str) -> Call[Dict[str, Any]]:
    return Call("GET", f"/sessions/{quote(session_id)}", parse_json, retry=Retry.ALL)


def delete_session(session_id: str) -> Call[None]:
    # Deleting again answers 204 again: safe to retry.
    return Call("DELETE", f"/sessions/{quote(session_id)}", parse_nothing, retry=Retry.ALL)


def terminate_session(session_id: str) -> Call[Dict[str, Any]]:
    return Call("POST", f"/sessions/{quote(session_id)}/terminate", parse_json, retry=Retry.ALL)


def list_sessions(
    status: Optional[str], template: Optional[str], limit: int, offset: int
) -> Call[List[Dict[str, Any]]]:
    params: Dict[str, Any] = {"limit": limit, "offset": offset}
    if status:
        params["status"] = status
    if template:
        params["template_id"] = template
    return Call("GET", "/sessions", lambda r: list(r.json()["items"]), params=params, retry=Retry.ALL)


def _execution_body(code: str, language: Optional[str], timeout: int,
                    context_id: Optional[str]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"code": code, "timeout": timeout}
    if language:
        body["language"] = language
    if context_id:
        body["context_id"] = context_id
    return body


def execute_sync(
    session_id: str, code: str, *, language: Optional[str], timeout: int,
    context_id: Optional[str], connect_timeout: Optional[float], stream: bool,
    idempotency_key: Optional[str] = None,
) -> Call[Execution]:
    """Run and answer the finished execution; with ``stream``, as Server-Sent Events (not
    retried once sent: a stream cannot be deduplicated, re-attaching takes over instead)."""
    # The server waits at most sync_timeout (10-3600 s) before answering an unfinished
    # execution; the client waits a little longer than that.
    sync_timeout = max(10, min(3600, timeout + 30))
    params: Dict[str, Any] = {"sync_timeout": sync_timeout}
    if stream:
        params["stream"] = "true"
    call = Call(
        "POST", f"/executions/sessions/{quote(session_id)}/execute-sync", parse_execution,
        params=params, json=_execution_body(code, language, timeout, context_id),
        timeout=httpx.Timeout(connect_timeout, read=sync_timeout + 30.0),
        patience=float(sync_timeout),
    )
    return call if stream else call.keyed(idempotency_key)


def start_execution(
    session_id: str, code: str, *, language: Optional[str], timeout: int,
    context_id: Optional[str], idempotency_key: Optional[str] = None,
) -> Call[Dict[str, Any]]:
    call: Call[Dict[str, Any]] = Call(
        "POST", f"/executions/sessions/{quote(session_id)}/execute", parse_json,
        json=_execution_body(code, language, timeout, context_id),
    )
    return call.keyed(idempotency_key)


def execution_status(execution_id: str) -> Call[Execution]:
    return Call("GET", f"/executions/{quote(execution_id)}/status", parse_execution, retry=Retry.ALL)


def execution_result(execution_id: str) -> Call[Execution]:
    """The execution: finished, or while it runs its current state (``running``)."""
    return Call("GET", f"/executions/{quote(execution_id)}/result", parse_execution, retry=Retry.ALL)


def cancel_execution(execution_id: str) -> Call[Execution]:
    # Cancelling an ended execution answers it as it is: safe to retry.
    return Call("POST", f"/executions/{quote(execution_id)}/cancel", parse_execution, retry=Retry.ALL)


def follow_execution(execution_id: str, last_event_id: Optional[int] = None,
                     read_timeout: Optional[float] = None) -> Call[None]:
    """``GET /executions/{id}/stream``, from the start or after ``last_event_id``. The server
    sends a keep-alive every 15 s, so a read timeout well above that finds a dead connection."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    timeout = httpx.Timeout(10.0, read=read_timeout) if read_timeout else None
    return Call("GET", f"/executions/{quote(execution_id)}/stream", parse_nothing,
                headers=headers, timeout=timeout, retry=Retry.ALL)


def create_context(session_id: str, language: str, cwd: Optional[str],
                   env_vars: Optional[Mapping[str, str]]) -> Call[Dict[str, Any]]:
    body: Dict[str, Any] = {"language": language}
    if cwd is not None:
        body["cwd"] = cwd
    if env_vars:
        body["env_vars"] = dict(env_vars)
    return Call("POST", f"/sessions/{quote(session_id)}/contexts", parse_json, json=body)


def list_contexts(session_id: str) -> Call[List[Dict[str, Any]]]:
    return Call("GET", f"/sessions/{quote(session_id)}/contexts", lambda r: list(r.json()["items"]),
                retry=Retry.ALL)


def context_path(session_id: str, context_id: str) -> str:
    return f"/sessions/{quote(session_id)}/contexts/{quote(context_id)}"


def get_context(session_id: str, context_id: str) -> Call[Dict[str, Any]]:
    return Call("GET", context_path(session_id, context_id), parse_json, retry=Retry.ALL)


def context_action(session_id: str, context_id: str, action: str) -> Call[Dict[str, Any]]:
    """``restart`` or ``interrupt``."""
    return Call("POST", f"{context_path(session_id, context_id)}/{action}", parse_json)


def delete_context(session_id: str, context_id: str) -> Call[None]:
    return Call("DELETE", context_path(session_id, context_id), parse_nothing)


def list_files(session_id: str, path: str, limit: Optional[int]) -> Call[List[Dict[str, Any]]]:
    params: Dict[str, Any] = {"path": path} if path else {}
    if limit:
        params["limit"] = limit
    return Call("GET", f"/sessions/{quote(session_id)}/files", lambda r: list(r.json()["files"]),
                params=params, retry=Retry.ALL)


def upload(session_id: str, path: str, data: Uploadable,
           on_progress: Optional[ProgressCallback]) -> Call[Dict[str, Any]]:
    """Store ``data`` at ``path``, streamed; retried when the body can be sent again (bytes,
    or a file object that can seek back)."""
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        stream: IO[bytes] = io.BytesIO(bytes(data))
    else:
        stream = data
    total = remaining(stream)
    start = _tell(stream)
    headers = {"Content-Type": "application/octet-stream"}
    if total is not None:
        headers["Content-Length"] = str(total)

    def chunks() -> Iterator[bytes]:
        if start is not None:
            stream.seek(start)
        done = 0
        while True:
            chunk = stream.read(CHUNK_SIZE)
            if not chunk:
                return
            done += len(chunk)
            yield chunk
            if on_progress:
                on_progress(done, total)

    # Uploading replaces the file: sending it again is harmless when the body can be.
    return Call("POST", f"/sessions/{quote(session_id)}/files/upload", parse_json,
                params={"path": path}, headers=headers, body=chunks,
                retry=Retry.ALL if start is not None else Retry.NO)


def download(session_id: str, path: str) -> Call[None]:
    return Call("GET", f"/sessions/{quote(session_id)}/files/{quote(path)}", parse_nothing,
                retry=Retry.ALL, follow_redirects=True)


def broken(call: "Call[Any]", base: str, exc: httpx.TransportError) -> ConnectionFailed:
    """The error of an answer that broke while it was read."""
    return ConnectionFailed(f"{call.where(base)}: {exc or type(exc).__name__}", code="connection_failed")


def content_length(response: httpx.Response) -> Optional[int]:
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def remove_file(session_id: str, path: str, recursive: bool) -> Call[None]:
    params = {"recursive": "true"} if recursive else {}
    return Call("DELETE", f"/sessions/{quote(session_id)}/files/{quote(path)}", parse_nothing,
                params=params)


def raw_request(method: str, path: str, kwargs: Dict[str, Any]) -> Call[Any]:
    """``Client.request``: any route, answering its JSON; GETs are retried."""
    call: Call[Any] = Call(method.upper(), path, parse_json, retry=Retry.ALL if method.upper() == "GET" else Retry.REFUSED)
    call.params = kwargs.pop("params", None)
    call.json = kwargs.pop("json", None)
    call.headers = dict(kwargs.pop("headers", None) or {})
    call.follow_redirects = bool(kwargs.pop("follow_redirects", False))
    if "timeout" in kwargs:
        call.extra["timeout"] = kwargs.pop("timeout")
    if "content" in kwargs:
        call.retry = Retry.NO
    call.extra.update(kwargs)
    return call


def remaining(stream: IO[bytes]) -> Optional[int]:
    """How many bytes a file object has left to read, when it can tell."""
    try:
        position = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(position)
        return end - position
    except (AttributeError, OSError, ValueError):
        return None


def _tell(stream: IO[bytes]) -> Optional[int]:
    try:
        return stream.tell() if stream.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


# -- fields of sessions and contexts ------------------------------------------------------------


class SessionFields:
    """A session's fields as last read from the server; ``raw`` has the whole answer."""

    raw: Dict[str, Any]
    id: str

    def _update(self, data: Dict[str, Any]) -> None:
        self.raw = data
        self.id = data["id"]
        self.template_id: str = data.get("template_id", "")
        self.status: str = data.get("status", "")
        self.env_vars: Dict[str, str] = data.get("env_vars") or {}
        self.timeout: Optional[int] = data.get("timeout")
        self.created_at: Optional[str] = data.get("created_at")
        self.error_message: Optional[str] = data.get("error_message")
        # The packages it asked for: ``installing`` (code run meanwhile waits for them),
        # ``completed``, or ``failed`` with the error and its stable code.
        self.dependency_install_status: str = data.get("dependency_install_status", "")
        self.dependency_install_error: Optional[str] = data.get("dependency_install_error")
        self.dependency_install_error_code: Optional[str] = data.get("dependency_install_error_code")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, template_id={self.template_id!r}, status={self.status!r})"

    @property
    def _path(self) -> str:
        return f"/sessions/{quote(self.id)}"


class ContextFields:
    """A code context's fields as last read from the server."""

    raw: Dict[str, Any]
    id: str

    def _update(self, data: Dict[str, Any]) -> None:
        self.raw = data
        self.id = data["id"]
        self.language: str = data.get("language", "")
        self.cwd: str = data.get("cwd", "")
        self.status: str = data.get("status", "")
        self.message: Optional[str] = data.get("message")
        self.execution_count: int = int(data.get("execution_count") or 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, language={self.language!r}, status={self.status!r})"


class HandleFields:
    """What ``POST …/execute`` answered about an execution it started."""

    def __init__(self, data: Dict[str, Any], timeout: Optional[int] = None) -> None:
        self.raw: Dict[str, Any] = data
        self.id: str = str(data.get("execution_id") or data["id"])
        self.session_id: str = str(data.get("session_id", ""))
        self.status: str = str(data.get("status", "running"))
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, session_id={self.session_id!r})"
