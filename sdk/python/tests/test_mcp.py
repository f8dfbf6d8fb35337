"""The MCP server (``sandbox-mcp``) driven over stdio by the official MCP client."""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from typing import Any, Awaitable, Callable, Dict, List, TypeVar

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from sandbox_sdk import Client, NotFound
from sandbox_sdk.mcp import SandboxTools

from .conftest import TEMPLATE
from .test_sdk import PNG

T = TypeVar("T")


def with_mcp(env: Dict[str, str], body: Callable[[ClientSession], Awaitable[T]]) -> T:
    """Start ``sandbox-mcp`` (as ``python -m sandbox_sdk.mcp``), run ``body`` with a connected
    client session, and stop the server again."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "sandbox_sdk.mcp"], env=env)

    async def main() -> T:
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)

    return asyncio.run(main())


async def call(session: ClientSession, tool: str, **arguments: Any) -> List[Any]:
    """A tool's content; fails the test when the tool reported an error."""
    result = await session.call_tool(tool, arguments)
    assert not is_error(result), texts(result.content)
    return list(result.content)


def is_error(result: Any) -> bool:
    # `is_error` from mcp 2 on, `isError` before.
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


def texts(content: List[Any]) -> str:
    return "\n".join(c.text for c in content if c.type == "text")


def test_tools_keep_state_and_files(server_env: Dict[str, str], client: Client) -> None:
    seen: Dict[str, Any] = {}

    async def body(session: ClientSession) -> None:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {"run_code", "create_session", "delete_session", "list_files", "read_file",
                "write_file"} <= tools

        first = texts(await call(session, "run_code", code="import math\nx = 41"))
        seen["session"] = re.search(r"started sandbox session (\S+)", first).group(1)  # type: ignore[union-attr]
        assert "status: completed" in first
        second = texts(await call(session, "run_code", code="print('hi')\nx + 1"))
        assert "stdout:\nhi" in second and "result:\n42" in second
        assert "started" not in second  # same session, same context

        shell = await call(session, "run_code", language="shell", code="cd /tmp && export N=5")
        assert "status: completed" in texts(shell)
        assert "/tmp 5" in texts(await call(session, "run_code", language="shell", code='echo "$PWD $N"'))

        failed = texts(await call(session, "run_code", code="1 / 0"))
        assert "status: failed" in failed and "ZeroDivisionError: division by zero" in failed
        assert "x = 41" not in failed
        assert "NameError" in texts(await call(session, "run_code", code="x", stateless=True))

        wrote = texts(await call(session, "write_file", path="notes/a.txt", content="héllo"))
        assert "wrote 6 bytes to notes/a.txt" in wrote
        assert texts(await call(session, "read_file", path="notes/a.txt")) == "héllo"
        assert "notes/a.txt  (6 bytes)" in texts(await call(session, "list_files"))
        assert "'héllo'" in texts(await call(session, "run_code", code="open('notes/a.txt').read()"))

        picture = (
            "import base64\nclass Pic:\n"
            f"    def _repr_png_(self): return base64.b64decode({base64.b64encode(PNG).decode()!r})\n"
            "Pic()"
        )
        content = await call(session, "run_code", code=picture)
        images = [c for c in content if c.type == "image"]
        assert len(images) == 1 and base64.b64decode(images[0].data) == PNG
        assert "image/png, attached" in texts(content)

        missing = await session.call_tool("read_file", {"path": "nope.txt"})
        assert is_error(missing) and "file_not_found" in texts(list(missing.content))

    with_mcp(server_env, body)
    # The server deleted the session it started when it exited.
    with pytest.raises(NotFound):
        client.get_session(seen["session"])


def test_create_and_delete_session_tools(server_env: Dict[str, str], client: Client) -> None:
    async def body(session: ClientSession) -> str:
        created = texts(await call(session, "create_session", env_vars={"WHO": "agent"}))
        session_id = re.search(r"session (\S+)", created).group(1)  # type: ignore[union-attr]
        out = texts(await call(session, "run_code", session_id=session_id,
                               code="import os\nos.environ['WHO']"))
        assert "result:\n'agent'" in out
        assert "deleted" in texts(await call(session, "delete_session", session_id=session_id))
        gone = await session.call_tool("run_code", {"session_id": session_id, "code": "1"})
        assert is_error(gone) and "session_not_found" in texts(list(gone.content))
        return session_id

    session_id = with_mcp(server_env, body)
    with pytest.raises(NotFound):
        client.get_session(session_id)


def test_lost_interpreter_and_ended_session_are_replaced_with_a_note(client: Client) -> None:
    tools = SandboxTools(client, TEMPLATE)
    try:
        first = tools.run_code("x = 1")[0]
        session_id = re.search(r"started sandbox session (\S+)", first).group(1)  # type: ignore[union-attr]
        tools.run_code("import os\nos._exit(3)")  # the interpreter ends: the context is lost
        again = tools.run_code("print('back')\n'x' in globals()")[0]
        assert "interpreter had been lost" in again and "stdout:\nback" in again
        assert "result:\nFalse" in again

        client.delete_session(session_id)  # ended behind the server's back
        replaced = tools.run_code("print('new')")[0]
        assert f"session {session_id} had ended (session_not_found)" in replaced
        assert "stdout:\nnew" in replaced
        new_id = re.search(r"started sandbox session (\S+)", replaced).group(1)  # type: ignore[union-attr]
        assert new_id != session_id
    finally:
        tools.close()
    with pytest.raises(NotFound):
        client.get_session(new_id)
