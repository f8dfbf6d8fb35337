"""Fixtures of the MCP tests: the server named by SANDBOX_URL and SANDBOX_API_KEY, reached by the
official MCP client over each transport in TRANSPORTS (stdio through the `sandbox` CLI that
SANDBOX_CLI names).

The tests talk to a real server; without one configured they stop at once with a message rather
than skipping (a green run must mean the tools were exercised).
"""

from __future__ import annotations

import json
import os
import urllib.request
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

# How a test reaches the server's MCP tools. "http": streamable HTTP straight to /mcp; "stdio":
# `sandbox mcp`, the CLI's relay from stdio to /mcp, as desktop MCP hosts start it.
TRANSPORTS = ["http", "stdio"]

# `connect(key=None)`: an async context manager yielding a ready ClientSession.
Connect = Callable[..., Any]


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [v for v in ("SANDBOX_URL", "SANDBOX_API_KEY", "SANDBOX_CLI") if not os.environ.get(v)]
    if missing:
        pytest.exit(
            f"{' and '.join(missing)} not set: these tests need a running sandbox server "
            "(export SANDBOX_URL=http://127.0.0.1:8080 SANDBOX_API_KEY=... SANDBOX_CLI=target/debug/sandbox)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def base_url() -> str:
    return os.environ["SANDBOX_URL"].rstrip("/")


def api_key() -> str:
    return os.environ["SANDBOX_API_KEY"]


@pytest.fixture(params=TRANSPORTS)
def connect(request: pytest.FixtureRequest) -> Connect:
    """``connect(key=...)``: an async context manager giving an initialized ClientSession over
    the test's transport, with the test key (or ``key``, or none when ``key=""``)."""
    transport = request.param

    @asynccontextmanager
    async def open_session(key: Optional[str] = None) -> AsyncIterator[ClientSession]:
        key = api_key() if key is None else key
        if transport == "http":
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with create_mcp_http_client(headers=headers) as http:
                async with streamable_http_client(f"{base_url()}/mcp", http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        yield session
        elif transport == "stdio":
            # Only what a host would give it: no config file, the key in SANDBOX_KEY.
            env = {"PATH": os.environ.get("PATH", ""), "SANDBOX_URL": base_url(),
                   "SANDBOX_CONFIG": os.path.join(os.path.dirname(__file__), "no-such-config.toml")}
            if key:
                env["SANDBOX_KEY"] = key
            params = StdioServerParameters(command=os.environ["SANDBOX_CLI"], args=["mcp"], env=env)
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session
        else:
            raise AssertionError(f"unknown transport {transport}")

    return open_session


@pytest.fixture
def cleanup() -> Iterator[List[str]]:
    """Session ids a test started: deleted through the REST API after it, whatever happened."""
    ids: List[str] = []
    yield ids
    for sid in ids:
        req = urllib.request.Request(
            f"{base_url()}/api/v1/sessions/{sid}",
            method="DELETE",
            headers={"Authorization": f"Bearer {api_key()}"},
        )
        try:
            urllib.request.urlopen(req, timeout=60).close()
        except Exception as e:  # noqa: BLE001 - cleanup reports and goes on
            print(f"could not delete session {sid}: {e}")


def post_json(path: str, body: object, headers: dict, timeout: float = 60) -> tuple[int, dict]:
    """A raw POST (for what the MCP client hides: the HTTP status of a refusal)."""
    req = urllib.request.Request(
        f"{base_url()}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
