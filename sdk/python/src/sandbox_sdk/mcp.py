"""An MCP server (stdio) that gives an agent sandboxed code execution: ``sandbox-mcp``.

Tools: ``run_code``, ``create_session``, ``delete_session``, ``list_files``, ``read_file`` and
``write_file``. By default every ``run_code`` goes to one session the server starts on first
use, into one code context per language, so variables, imports and functions persist between
calls as in a notebook. Sessions the server created are deleted when it exits.

Configuration (environment): ``SANDBOX_URL``, ``SANDBOX_API_KEY``, and ``SANDBOX_TEMPLATE``
(the template of the sessions it starts; ``python-basic`` by default).

Needs the ``mcp`` package (``pip install 'sandbox-sdk[mcp]'``): its FastMCP server (called
``MCPServer`` from mcp 2 on).
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import signal
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union

import anyio

from .client import DEFAULT_TEMPLATE, Client, Context, Session
from .errors import Conflict, NotFound, SandboxError
from .models import Execution

try:  # mcp 2.x
    from mcp.server.mcpserver import Image
    from mcp.server.mcpserver import MCPServer as FastMCP
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP, Image  # type: ignore
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore

__all__ = ["SandboxTools", "build_server", "main"]

# Output longer than this (per stream) is cut, so one noisy cell cannot flood the agent.
MAX_TEXT = 20_000
# Files read back whole as text up to this size; larger ones are cut.
MAX_FILE_TEXT = 100_000
IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}

Content = List[Union[str, Image]]
T = TypeVar("T")

INSTRUCTIONS = """\
Runs code in an isolated sandbox (no network). run_code keeps one interpreter per language for
this conversation: variables, imports and functions persist between calls, like notebook cells,
and the value of the last expression is returned. Files written in one language are visible to
the others and to the file tools (paths are relative to the workspace, /workspace)."""


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters cut]"


class SandboxTools:
    """The state behind the tools: the sessions this server created, the default session and
    the code context of each (session, language). Calls are blocking; the server runs them in
    worker threads, so state changes are made under a lock."""

    def __init__(self, client: Client, template: str = DEFAULT_TEMPLATE) -> None:
        self.client = client
        self.template = template
        self._lock = threading.RLock()
        self._created: Dict[str, Session] = {}
        self._default: Optional[Session] = None
        self._contexts: Dict[Tuple[str, str], Context] = {}

    # -- sessions ---------------------------------------------------------------------------

    def create_session(self, template: Optional[str] = None, env_vars: Optional[Dict[str, str]] = None) -> Session:
        session = self.client.create_session(template or self.template, env_vars=env_vars)
        with self._lock:
            self._created[session.id] = session
        return session

    def _session(self, session_id: Optional[str], notes: List[str]) -> Session:
        """The session a tool call names, or the default one (started when there is none)."""
        if session_id:
            return self._created.get(session_id) or self.client.get_session(session_id)
        with self._lock:
            if self._default is None:
                self._default = self.create_session()
                notes.append(f"started sandbox session {self._default.id} ({self._default.template_id})")
            return self._default

    def _forget(self, session_id: str) -> None:
        with self._lock:
            self._created.pop(session_id, None)
            if self._default is not None and self._default.id == session_id:
                self._default = None
            for key in [k for k in self._contexts if k[0] == session_id]:
                del self._contexts[key]

    def _on_session(self, session_id: Optional[str], notes: List[str], action: Callable[[Session], T]) -> T:
        """``action`` on the named or default session. A default session that has ended (idle
        timeout, deleted elsewhere) is replaced once, with a note saying its state is gone."""
        session = self._session(session_id, notes)
        try:
            return action(session)
        except (NotFound, Conflict) as e:
            if session_id or e.code not in ("session_not_found", "session_not_running"):
                raise
            notes.append(f"session {session.id} had ended ({e.code}); its variables and files are gone")
            self._forget(session.id)
            return action(self._session(None, notes))

    def delete_session(self, session_id: str) -> None:
        self.client.delete_session(session_id)
        self._forget(session_id)

    def close(self) -> None:
        """Delete every session this server created."""
        with self._lock:
            sessions = list(self._created.values())
            self._created.clear()
            self._contexts.clear()
            self._default = None
        for session in sessions:
            try:
                session.delete()
            except SandboxError as e:
                print(f"sandbox-mcp: could not delete session {session.id}: {e}", file=sys.stderr)

    # -- code -------------------------------------------------------------------------------

    def _context(self, session: Session, language: str, notes: List[str]) -> Context:
        with self._lock:
            ctx = self._contexts.get((session.id, language))
            if ctx is None:
                ctx = session.create_context(language)
                self._contexts[(session.id, language)] = ctx
                notes.append(f"started a {language} context {ctx.id}")
            return ctx

    def _run_in_context(self, session: Session, code: str, language: str, timeout: int, notes: List[str]) -> Execution:
        ctx = self._context(session, language, notes)
        try:
            return ctx.run(code, timeout=timeout)
        except Conflict as e:
            if e.code != "context_lost":
                raise
            ctx.restart()
            notes.append(f"the {language} interpreter had been lost ({e.message}); it was restarted "
                         "empty, so earlier variables are gone")
            return ctx.run(code, timeout=timeout)

    def run_code(
        self,
        code: str,
        language: str = "python",
        session_id: Optional[str] = None,
        context_id: Optional[str] = None,
        stateless: bool = False,
        timeout: int = 30,
    ) -> Content:
        notes: List[str] = []

        def run(session: Session) -> Execution:
            if context_id:
                return session.run(code, timeout=timeout, context_id=context_id)
            if stateless:
                return session.run(code, language=language, timeout=timeout)
            return self._run_in_context(session, code, language, timeout, notes)

        execution = self._on_session(session_id, notes, run)
        return format_execution(execution, notes)

    # -- files ------------------------------------------------------------------------------

    def list_files(self, path: str = "", session_id: Optional[str] = None) -> str:
        notes: List[str] = []
        entries = self._on_session(session_id, notes, lambda s: s.files.list(path))
        lines = notes + [
            f"{e.path}/" if e.is_dir else f"{e.path}  ({e.size} bytes)" for e in entries
        ]
        return "\n".join(lines) or "(no files)"

    def read_file(self, path: str, session_id: Optional[str] = None) -> Content:
        notes: List[str] = []
        data = self._on_session(session_id, notes, lambda s: s.files.read(path))
        ext = posixpath.splitext(path)[1].lower().lstrip(".")
        image_format = {"jpg": "jpeg"}.get(ext, ext)
        if image_format in IMAGE_TYPES.values():
            return [*notes, Image(data=data, format=image_format)]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return [*notes, f"{path} is a binary file of {len(data)} bytes (not shown)"]
        return [*notes, _cut(text, MAX_FILE_TEXT)]

    def write_file(self, path: str, content: str, session_id: Optional[str] = None) -> str:
        notes: List[str] = []
        info = self._on_session(session_id, notes, lambda s: s.files.write(path, content))
        return "\n".join([*notes, f"wrote {info.size} bytes to {info.path}"])


def format_execution(execution: Execution, notes: List[str]) -> Content:
    """An execution as MCP content: one text part, plus an image per image output."""
    parts: List[str] = [f"[{note}]" for note in notes]
    status = execution.status
    if execution.exit_code not in (None, 0):
        status += f" (exit code {execution.exit_code})"
    if execution.error_message and not execution.error:
        status += f": {execution.error_message}"
    parts.append(f"status: {status}")
    if execution.stdout:
        parts.append("stdout:\n" + _cut(execution.stdout))
    if execution.stderr and not execution.error:
        parts.append("stderr:\n" + _cut(execution.stderr))
    if execution.error:
        parts.append(f"error: {execution.error}\n{_cut(execution.error.traceback)}")
    images: List[Image] = []
    for result in execution.results:
        label = "result" if result.is_main_result else "display"
        for mime, fmt in IMAGE_TYPES.items():
            if isinstance(result.data.get(mime), str):
                images.append(Image(data=result.binary(mime), format=fmt))
                label += f" ({mime}, attached)"
                break
        text = result.text or result.markdown or result.html
        parts.append(f"{label}:\n{_cut(text)}" if text else label)
    if execution.results_truncated:
        parts.append("[more display outputs were dropped: the execution's limit was reached]")
    return ["\n\n".join(parts), *images]


def build_server(tools: SandboxTools) -> FastMCP:
    """The MCP server with its tools bound to ``tools``."""
    server = FastMCP("sandbox", instructions=INSTRUCTIONS)

    async def call(fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker thread; the server's errors reach the agent as tool errors
        with their code (``session_not_found: ...``)."""
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args))
        except SandboxError as e:
            raise ToolError(str(e)) from e

    @server.tool(structured_output=False)
    async def run_code(
        code: str,
        language: str = "python",
        session_id: Optional[str] = None,
        context_id: Optional[str] = None,
        stateless: bool = False,
        timeout: int = 30,
    ) -> Content:
        """Run code in the sandbox and return its stdout, stderr, error and results.

        language: "python", "javascript" or "shell" (javascript needs a template that has it).
        By default the code runs in this conversation's interpreter for that language, so
        variables persist between calls and the last expression's value is returned.
        stateless: run in a fresh interpreter instead. session_id: a session from
        create_session instead of the default one. context_id: a code context of your own.
        timeout: seconds (1-3600). Images (matplotlib figures, display()) are attached.
        """
        return await call(tools.run_code, code, language, session_id, context_id, stateless, timeout)

    @server.tool(structured_output=False)
    async def create_session(template: Optional[str] = None, env_vars: Optional[Dict[str, str]] = None) -> str:
        """Start another sandbox session and return its id, for the session_id argument of the
        other tools (they use a default session without one). template: e.g. "python-basic",
        "multi-language" (Python, JavaScript, shell), "python-datascience" (pandas, matplotlib).
        """
        session = await call(tools.create_session, template, env_vars)
        return f"session {session.id} ({session.template_id}) is {session.status}"

    @server.tool(structured_output=False)
    async def delete_session(session_id: str) -> str:
        """Delete a sandbox session with its files and interpreters."""
        await call(tools.delete_session, session_id)
        return f"session {session_id} deleted"

    @server.tool(structured_output=False)
    async def list_files(path: str = "", session_id: Optional[str] = None) -> str:
        """List the workspace's files below path (all by default), recursively, with sizes."""
        return await call(tools.list_files, path, session_id)

    @server.tool(structured_output=False)
    async def read_file(path: str, session_id: Optional[str] = None) -> Content:
        """Read a workspace file: text as text, PNG/JPEG/GIF/WebP images as images."""
        return await call(tools.read_file, path, session_id)

    @server.tool(structured_output=False)
    async def write_file(path: str, content: str, session_id: Optional[str] = None) -> str:
        """Write text to a workspace file (directories are created, a file replaced)."""
        return await call(tools.write_file, path, content, session_id)

    return server


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Serve the tools over stdio until the client closes the connection (or SIGTERM)."""
    try:
        client = Client()
    except SandboxError as e:
        sys.exit(f"sandbox-mcp: {e.message}")
    tools = SandboxTools(client, os.environ.get("SANDBOX_TEMPLATE") or DEFAULT_TEMPLATE)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        build_server(tools).run("stdio")
    finally:
        tools.close()
        client.close()


if __name__ == "__main__":
    main()
