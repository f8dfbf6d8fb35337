"""The server's MCP tools (`/mcp`) driven by the official MCP client, as a model's host would."""

from __future__ import annotations

import base64
import re
from typing import Any, List

import anyio
import pytest
from mcp import ClientSession

from conftest import Connect, api_key, post_json

pytestmark = pytest.mark.anyio

TOOLS = {
    "create_session", "run_code", "create_context", "list_files", "read_file", "write_file",
    "install_packages", "list_templates", "list_sessions", "terminate_session",
}


def is_error(result: Any) -> bool:
    # `is_error` in mcp 2, `isError` before.
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


def texts(result: Any) -> str:
    return "\n".join(c.text for c in result.content if c.type == "text")


async def ok(session: ClientSession, tool: str, **arguments: Any) -> Any:
    """A tool's result; fails the test when the tool reported an error."""
    result = await session.call_tool(tool, arguments)
    assert not is_error(result), texts(result)
    return result


async def start(session: ClientSession, cleanup: List[str], template: str = "python-basic") -> str:
    text = texts(await ok(session, "create_session", template=template))
    m = re.match(r"session (\S+) \(template " + re.escape(template) + r"\) is running", text)
    assert m, text
    cleanup.append(m.group(1))
    return m.group(1)


async def test_tools_are_listed_with_descriptions_and_schemas(connect: Connect) -> None:
    async with connect() as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for t in tools.values():
        assert len(t.description or "") > 60, t.name
    run = tools["run_code"].input_schema if hasattr(tools["run_code"], "input_schema") else tools["run_code"].inputSchema
    assert run["required"] == ["session_id", "code"]
    assert {"session_id", "code", "language", "context_id", "timeout"} <= set(run["properties"])


async def test_every_tool_and_state_across_calls(connect: Connect, cleanup: List[str]) -> None:
    async with connect() as session:
        templates = texts(await ok(session, "list_templates"))
        assert "python-basic" in templates and "python-datascience" in templates and "matplotlib" in templates

        sid = await start(session, cleanup)
        assert sid in texts(await ok(session, "list_sessions"))

        # The default Python context keeps variables, imports and functions between calls.
        await ok(session, "run_code", session_id=sid, code="import math\nx = 41\ndef double(v): return 2 * v")
        out = texts(await ok(session, "run_code", session_id=sid, code="print('x is', x)\ndouble(x + 1)"))
        assert "status: completed" in out and "x is 41" in out, out
        assert re.search(r"result:\n84\b", out), out

        # A context of its own is a separate namespace with state of its own.
        ctx_text = texts(await ok(session, "create_context", session_id=sid, language="python"))
        ctx = re.match(r"context (\S+) \(python\)", ctx_text)
        assert ctx, ctx_text
        cid = ctx.group(1)
        fresh = texts(await ok(session, "run_code", session_id=sid, context_id=cid, code="x"))
        assert "NameError" in fresh, fresh
        await ok(session, "run_code", session_id=sid, context_id=cid, code="y = 'kept'")
        assert "'kept'" in texts(await ok(session, "run_code", session_id=sid, context_id=cid, code="y"))

        # Shell, its exit code and stderr; a raised exception is the call's content, not a tool error.
        sh = texts(await ok(session, "run_code", session_id=sid, language="shell",
                            code="echo from-shell; echo oops >&2; (exit 3)"))
        assert "from-shell" in sh and "oops" in sh and "exit code 3" in sh, sh
        raised = texts(await ok(session, "run_code", session_id=sid, code="1/0"))
        assert "ZeroDivisionError" in raised, raised

        # Files: written by the tools, seen by code and the other way round.
        assert "wrote 6 bytes" in texts(await ok(session, "write_file", session_id=sid,
                                                 path="notes/a.txt", content="hello\n"))
        await ok(session, "run_code", session_id=sid,
                 code="open('/workspace/notes/b.bin', 'wb').write(bytes(range(256)))")
        listing = texts(await ok(session, "list_files", session_id=sid, path="notes"))
        assert "notes/a.txt  (6 bytes)" in listing and "notes/b.bin  (256 bytes)" in listing, listing
        assert texts(await ok(session, "read_file", session_id=sid, path="notes/a.txt")) == "hello\n"
        blob = (await ok(session, "read_file", session_id=sid, path="notes/b.bin")).content[0]
        assert blob.type == "resource", blob
        assert base64.b64decode(blob.resource.blob) == bytes(range(256))
        await ok(session, "write_file", session_id=sid, path="c.bin", encoding="base64",
                 content=base64.b64encode(b"\x00\xffbin").decode())
        back = texts(await ok(session, "run_code", session_id=sid,
                              code="open('/workspace/c.bin', 'rb').read()"))
        assert r"b'\x00\xffbin'" in back, back

        # Packages: the installer needs the package index; where the egress proxy may not reach
        # it (as in the live checks) the refusal says so with its code.
        result = await session.call_tool("install_packages", {"session_id": sid, "packages": ["six==1.16.0"]})
        if is_error(result):
            assert texts(result).startswith(("package_index_unreachable: ", "dependencies_unsupported: ")), texts(result)
        else:
            assert "six==1.16.0" in texts(result)

        ended = texts(await ok(session, "terminate_session", session_id=sid))
        assert f"session {sid}" in ended and "terminated" in ended, ended
        after = await session.call_tool("run_code", {"session_id": sid, "code": "1"})
        assert is_error(after) and texts(after).startswith("session_not_running: "), texts(after)


async def test_a_matplotlib_figure_arrives_as_png_image_content(connect: Connect, cleanup: List[str]) -> None:
    async with connect() as session:
        sid = await start(session, cleanup, "python-datascience")
        code = (
            "import matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3], [1, 4, 9])\n"
            "plt.title('squares')\n"
            "plt.show()\n"
        )
        result = await ok(session, "run_code", session_id=sid, code=code, timeout=120)
        images = [c for c in result.content if c.type == "image"]
        assert len(images) == 1, texts(result)
        image = images[0]
        assert (getattr(image, "mime_type", None) or getattr(image, "mimeType", None)) == "image/png"
        png = base64.b64decode(image.data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
        assert "(image/png, attached)" in texts(result)
        # The figure saved as a file reads back as an image too.
        await ok(session, "run_code", session_id=sid, code="plt.plot([1, 2]); plt.savefig('/workspace/fig.png')")
        saved = (await ok(session, "read_file", session_id=sid, path="fig.png")).content[0]
        assert saved.type == "image" and base64.b64decode(saved.data).startswith(b"\x89PNG")


async def test_refusals_are_tool_errors_with_our_codes(connect: Connect) -> None:
    async with connect() as session:
        result = await session.call_tool("run_code", {"session_id": "no-such-session", "code": "1"})
        assert is_error(result)
        assert texts(result).startswith("session_not_found: "), texts(result)
        result = await session.call_tool("create_session", {"template": "no-such-template"})
        assert is_error(result) and re.match(r"^\w+: ", texts(result)), texts(result)
        assert "no-such-template" in texts(result)


async def test_no_key_or_a_wrong_key_is_refused(connect: Connect) -> None:
    # The client cannot even initialize: the server refuses before any MCP is spoken.
    for key in ("", "not-a-key-of-this-server"):
        listed = None
        with pytest.raises(Exception):
            async with connect(key=key) as session:
                listed = await session.list_tools()
        assert listed is None
    # On the wire the refusal is the REST API's: 401 with the stable code.
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    status, body = post_json("/mcp", init, {})
    assert status == 401 and body["code"] == "unauthorized", body
    status, body = post_json("/mcp", init, {"Authorization": f"Bearer {api_key()}"})
    assert status == 200 and body["result"]["serverInfo"]["name"] == "sandbox", body


async def test_a_client_that_goes_away_interrupts_its_code(connect: Connect, cleanup: List[str]) -> None:
    async with connect() as session:
        sid = await start(session, cleanup)
        loop = "import time\ni = 0\nwhile i < 60:\n    i += 1\n    time.sleep(0.5)\n"
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": "run_code", "arguments": {"session_id": sid, "code": loop, "timeout": 120}}}
        # The HTTP request is dropped after 3 s, long before the loop's 30 s.
        with pytest.raises(OSError):
            post_json("/mcp", call, {"Authorization": f"Bearer {api_key()}"}, timeout=3)
        # The context is free again at once (not busy for the rest of the loop), its state kept.
        out = ""
        for _ in range(20):
            result = await session.call_tool("run_code", {"session_id": sid, "code": "i"})
            out = texts(result)
            if not out.startswith("context_busy: "):
                break
            await anyio.sleep(0.5)
        m = re.search(r"result:\n(\d+)", out)
        assert m and 0 < int(m.group(1)) < 30, out


async def test_each_language_has_a_default_context_of_its_own(connect: Connect, cleanup: List[str]) -> None:
    async with connect() as session:
        sid = await start(session, cleanup, "multi-language")
        await ok(session, "run_code", session_id=sid, code="x = 'from python'")
        await ok(session, "run_code", session_id=sid, language="javascript", code="var x = 6 * 7;")
        js = texts(await ok(session, "run_code", session_id=sid, language="javascript", code="x"))
        assert re.search(r"result:\n42\b", js), js
        py = texts(await ok(session, "run_code", session_id=sid, language="python", code="x"))
        assert "'from python'" in py, py
        await ok(session, "run_code", session_id=sid, language="shell", code="export GREETING=hi")
        sh = texts(await ok(session, "run_code", session_id=sid, language="shell", code="echo $GREETING-there"))
        assert "hi-there" in sh, sh
