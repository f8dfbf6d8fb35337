"""The synchronous client: sessions, executions, code contexts and workspace files.

>>> from sandbox_sdk import Client
>>> with Client() as client, client.create_session() as session:
...     print(session.run("print(6 * 7)").stdout)
42
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import urllib.parse
from contextlib import contextmanager
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import httpx

from .errors import (
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    StreamError,
    error_from_response,
)
from .models import Execution, FileInfo, Result, UploadInfo

__all__ = ["Client", "Session", "Context", "Files", "DEFAULT_TEMPLATE"]

DEFAULT_TEMPLATE = "python-basic"
API_PREFIX = "/api/v1"
CHUNK_SIZE = 256 * 1024

TextCallback = Callable[[str], None]
DisplayCallback = Callable[[Result], None]
# Called with the bytes moved so far and the total, when known.
ProgressCallback = Callable[[int, Optional[int]], None]
Uploadable = Union[bytes, bytearray, memoryview, str, IO[bytes]]


def _quote(path: str) -> str:
    return urllib.parse.quote(path.lstrip("/"), safe="/")


def _dependency(spec: Union[str, Mapping[str, str]]) -> Dict[str, str]:
    """``"requests==2.31.0"`` (or a mapping as the API takes it) as ``{"name", "version"}``."""
    if not isinstance(spec, str):
        return dict(spec)
    name, version = re.match(r"\s*([^=<>~!\s]+)\s*(.*?)\s*$", spec).groups()  # type: ignore[union-attr]
    return {"name": name, "version": version} if version else {"name": name}


def _iter_sse(response: httpx.Response) -> Iterator[Tuple[str, Any]]:
    """The (event, parsed JSON data) pairs of a Server-Sent Events response."""
    event = "message"
    data: List[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event = "message"
            data = []
        elif line.startswith(":"):
            continue  # a keep-alive comment
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, json.loads("\n".join(data))


class Client:
    """A connection to a sandbox server.

    Args:
        url: the server's base URL (``http://127.0.0.1:8080``); ``$SANDBOX_URL`` when left out.
        api_key: the API key; ``$SANDBOX_API_KEY`` when left out.
        timeout: seconds to wait for an answer to requests other than executions (which wait
            as long as their own timeout needs).
        transport: an httpx transport to use instead of the network (tests, proxies).
    """

    def __init__(
        self,
        url: Optional[str] = None,
        api_key: Optional[str] = None,
        *,
        timeout: float = 60.0,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        url = url or os.environ.get("SANDBOX_URL")
        api_key = api_key or os.environ.get("SANDBOX_API_KEY")
        if not url:
            raise ConfigurationError("no server URL: set SANDBOX_URL or pass one", code="not_configured")
        if not api_key:
            raise ConfigurationError("no API key: set SANDBOX_API_KEY or pass one", code="not_configured")
        self.url = url.rstrip("/")
        if self.url.endswith(API_PREFIX):
            self.url = self.url[: -len(API_PREFIX)]
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

    @contextmanager
    def _send(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Send a request and yield its (unread) response; error answers raise."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                yield response
        except httpx.TransportError as e:
            raise ConnectionFailed(
                f"{method} {self.url}{API_PREFIX}{path}: {e or type(e).__name__}", code="connection_failed"
            ) from e

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request to ``/api/v1{path}`` and answer its JSON body (``None`` when empty).

        Keyword arguments go to :meth:`httpx.Client.request` (``json``, ``params``, ...).
        """
        with self._send(method, path, **kwargs) as response:
            response.read()
            return response.json() if response.content else None

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
    ) -> "Session":
        """Create a session and wait until it runs.

        Args:
            template: ``python-basic``, ``multi-language``, ``python-datascience``, ...
            env_vars: environment variables of its executions.
            timeout: idle timeout in seconds (the template's default when left out).
            cpu, memory, disk: resources (``"1"``, ``"512Mi"``, ``"1Gi"``).
            dependencies: Python packages to install first (``"requests==2.31.0"``).
            session_id: a name of your choosing for it.
        """
        body: Dict[str, Any] = {"template_id": template}
        optional = {"env_vars": env_vars, "timeout": timeout, "cpu": cpu, "memory": memory,
                    "disk": disk, "id": session_id}
        body.update({k: v for k, v in optional.items() if v is not None})
        if dependencies:
            body["dependencies"] = [_dependency(d) for d in dependencies]
        return Session(self, self.request("POST", "/sessions", json=body))

    def get_session(self, session_id: str) -> "Session":
        """One session (``NotFound`` when there is none of that id)."""
        return Session(self, self.request("GET", f"/sessions/{_quote(session_id)}"))

    def delete_session(self, session_id: str) -> None:
        """Remove a session, its executions and its workspace (again: no error)."""
        self.request("DELETE", f"/sessions/{_quote(session_id)}")

    def list_sessions(
        self,
        *,
        status: Optional[str] = None,
        template: Optional[str] = None,
        limit: int = 100,
        offset: int = 0,
    ) -> List["Session"]:
        """The key's sessions, newest first."""
        params: Dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if template:
            params["template_id"] = template
        body = self.request("GET", "/sessions", params=params)
        return [Session(self, item) for item in body["items"]]

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
    ) -> Execution:
        """Run code in a session and answer the finished execution.

        With any callback the output streams (Server-Sent Events) and each callback is called
        as it arrives; without, one request waits for the result. ``Session.run`` and
        ``Context.run`` are the usual way in.
        """
        body: Dict[str, Any] = {"code": code, "timeout": timeout}
        if language:
            body["language"] = language
        if context_id:
            body["context_id"] = context_id
        path = f"/executions/sessions/{_quote(session_id)}/execute-sync"
        # The server waits at most sync_timeout (10-3600 s) before answering an unfinished
        # execution; the client waits a little longer than that.
        sync_timeout = max(10, min(3600, timeout + 30))
        params: Dict[str, Any] = {"sync_timeout": sync_timeout}
        http_timeout = httpx.Timeout(self._http.timeout.connect, read=sync_timeout + 30.0)
        streaming = on_stdout or on_stderr or on_display
        if not streaming:
            execution = Execution.from_dict(
                self.request("POST", path, json=body, params=params, timeout=http_timeout)
            )
            return self._wait(execution)

        params["stream"] = "true"
        execution_id = None
        with self._send("POST", path, json=body, params=params, timeout=http_timeout) as response:
            for event, data in _iter_sse(response):
                if event == "started":
                    execution_id = data.get("execution_id")
                elif event == "stdout" and on_stdout:
                    on_stdout(data.get("data", ""))
                elif event == "stderr" and on_stderr:
                    on_stderr(data.get("data", ""))
                elif event == "display" and on_display:
                    on_display(Result.from_dict(data))
                elif event == "result":
                    return self._wait(Execution.from_dict(data))
        if execution_id is None:
            raise StreamError("the stream ended before the execution started", code="stream_ended")
        # The execution goes on without us; its result is stored.
        return self._wait(Execution(id=execution_id, session_id=session_id, status="running"))

    def get_execution(self, execution_id: str) -> Execution:
        """An execution's current state."""
        return Execution.from_dict(self.request("GET", f"/executions/{_quote(execution_id)}/status"))

    def _wait(self, execution: Execution, interval: float = 0.5) -> Execution:
        """``execution`` once finished, asking for its result while it runs."""
        while not execution.finished:
            time.sleep(interval)
            try:
                execution = Execution.from_dict(
                    self.request("GET", f"/executions/{_quote(execution.id)}/result")
                )
            except Conflict as e:
                if e.code != "execution_not_finished":
                    raise
        return execution


class Session:
    """A sandbox session: a container with a workspace, for executions and code contexts.

    Used as a context manager it is deleted on exit. Fields are as last read from the server
    (:meth:`refresh` reads them again); ``raw`` has the whole answer.
    """

    def __init__(self, client: Client, data: Dict[str, Any]) -> None:
        self.client = client
        self.files = Files(self)
        self._update(data)

    def _update(self, data: Dict[str, Any]) -> None:
        self.raw: Dict[str, Any] = data
        self.id: str = data["id"]
        self.template_id: str = data.get("template_id", "")
        self.status: str = data.get("status", "")
        self.env_vars: Dict[str, str] = data.get("env_vars") or {}
        self.timeout: Optional[int] = data.get("timeout")
        self.created_at: Optional[str] = data.get("created_at")
        self.error_message: Optional[str] = data.get("error_message")

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, template_id={self.template_id!r}, status={self.status!r})"

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    @property
    def _path(self) -> str:
        return f"/sessions/{_quote(self.id)}"

    def refresh(self) -> "Session":
        """Read the session's state again."""
        self._update(self.client.request("GET", self._path))
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
        )

    def create_context(
        self,
        language: str = "python",
        cwd: Optional[str] = None,
        env_vars: Optional[Mapping[str, str]] = None,
    ) -> "Context":
        """Start a code context: an interpreter whose state persists between runs."""
        body: Dict[str, Any] = {"language": language}
        if cwd is not None:
            body["cwd"] = cwd
        if env_vars:
            body["env_vars"] = dict(env_vars)
        return Context(self, self.client.request("POST", f"{self._path}/contexts", json=body))

    def list_contexts(self) -> List["Context"]:
        """The session's code contexts."""
        body = self.client.request("GET", f"{self._path}/contexts")
        return [Context(self, item) for item in body["items"]]

    def get_context(self, context_id: str) -> "Context":
        """One code context."""
        return Context(self, self.client.request("GET", f"{self._path}/contexts/{_quote(context_id)}"))

    def terminate(self) -> None:
        """Stop the sandbox and keep the session's record."""
        self._update(self.client.request("POST", f"{self._path}/terminate"))

    def delete(self) -> None:
        """Remove the session, its executions and its workspace (again: no error)."""
        self.client.delete_session(self.id)


class Context:
    """A code context: one long-lived interpreter of a session (a notebook kernel)."""

    def __init__(self, session: Session, data: Dict[str, Any]) -> None:
        self.session = session
        self._update(data)

    def _update(self, data: Dict[str, Any]) -> None:
        self.raw: Dict[str, Any] = data
        self.id: str = data["id"]
        self.language: str = data.get("language", "")
        self.cwd: str = data.get("cwd", "")
        self.status: str = data.get("status", "")
        self.message: Optional[str] = data.get("message")
        self.execution_count: int = int(data.get("execution_count") or 0)

    def __repr__(self) -> str:
        return f"Context(id={self.id!r}, language={self.language!r}, status={self.status!r})"

    @property
    def _path(self) -> str:
        return f"{self.session._path}/contexts/{_quote(self.id)}"

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

    def refresh(self) -> "Context":
        """Read the context's state again."""
        self._update(self.session.client.request("GET", self._path))
        return self

    def restart(self) -> "Context":
        """Replace the interpreter with a fresh one, as the context was created."""
        self._update(self.session.client.request("POST", f"{self._path}/restart"))
        return self

    def interrupt(self) -> "Context":
        """Interrupt the running cell (``KeyboardInterrupt`` in Python); state is kept."""
        self._update(self.session.client.request("POST", f"{self._path}/interrupt"))
        return self

    def delete(self) -> None:
        """End the interpreter and forget the context."""
        self.session.client.request("DELETE", self._path)


class Files:
    """The session's workspace files (``session.files``). Paths are relative to the workspace."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def _client(self) -> Client:
        return self._session.client

    def list(self, path: str = "", *, limit: Optional[int] = None) -> List[FileInfo]:
        """Every entry below ``path`` (the whole workspace by default), recursively."""
        params: Dict[str, Any] = {"path": path} if path else {}
        if limit:
            params["limit"] = limit
        body = self._client.request("GET", f"{self._session._path}/files", params=params)
        return [FileInfo.from_dict(f) for f in body["files"]]

    def write(
        self, path: str, data: Uploadable, *, on_progress: Optional[ProgressCallback] = None
    ) -> UploadInfo:
        """Store ``data`` (bytes, text as UTF-8, or a binary file object, streamed) at ``path``.

        Missing directories are created; an existing file is replaced.
        """
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, (bytes, bytearray, memoryview)):
            stream: IO[bytes] = io.BytesIO(bytes(data))
        else:
            stream = data
        total = _remaining(stream)
        headers = {"Content-Type": "application/octet-stream"}
        if total is not None:
            headers["Content-Length"] = str(total)

        def chunks() -> Iterator[bytes]:
            done = 0
            while True:
                chunk = stream.read(CHUNK_SIZE)
                if not chunk:
                    return
                done += len(chunk)
                yield chunk
                if on_progress:
                    on_progress(done, total)

        body = self._client.request(
            "POST", f"{self._session._path}/files/upload",
            params={"path": path}, content=chunks(), headers=headers,
        )
        return UploadInfo.from_dict(body)

    def download(
        self, path: str, dest: IO[bytes], *, on_progress: Optional[ProgressCallback] = None
    ) -> int:
        """Stream the file at ``path`` into ``dest``; answers the number of bytes written."""
        done = 0
        url = f"{self._session._path}/files/{_quote(path)}"
        with self._client._send("GET", url, follow_redirects=True) as response:
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
            for chunk in response.iter_bytes(CHUNK_SIZE):
                dest.write(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(done, total)
        return done

    def read(self, path: str, *, on_progress: Optional[ProgressCallback] = None) -> bytes:
        """The content of the file at ``path``."""
        buffer = io.BytesIO()
        self.download(path, buffer, on_progress=on_progress)
        return buffer.getvalue()

    def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file, or a directory (which must be empty unless ``recursive``)."""
        params = {"recursive": "true"} if recursive else {}
        self._client.request("DELETE", f"{self._session._path}/files/{_quote(path)}", params=params)


def _remaining(stream: IO[bytes]) -> Optional[int]:
    """How many bytes a file object has left to read, when it can tell."""
    try:
        position = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(position)
        return end - position
    except (AttributeError, OSError, ValueError):
        return None
