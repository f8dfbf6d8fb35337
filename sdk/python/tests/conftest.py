"""Fixtures of the live tests: a client of the server named by SANDBOX_URL and SANDBOX_API_KEY.

The tests talk to a real server; without one configured they stop at once with a message
rather than skipping (a green run must mean the clients were exercised).
"""

from __future__ import annotations

import os
import uuid
from typing import Dict, Iterator

import pytest

from sandbox_sdk import Client, Session

TEMPLATE = os.environ.get("SANDBOX_TEST_TEMPLATE", "python-basic")


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [v for v in ("SANDBOX_URL", "SANDBOX_API_KEY") if not os.environ.get(v)]
    if missing:
        pytest.exit(
            f"{' and '.join(missing)} not set: these tests need a running sandbox server "
            "(export SANDBOX_URL=http://127.0.0.1:8080 SANDBOX_API_KEY=...)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def server_env() -> Dict[str, str]:
    """The variables that point a client (or a subprocess) at the server."""
    return {"SANDBOX_URL": os.environ["SANDBOX_URL"], "SANDBOX_API_KEY": os.environ["SANDBOX_API_KEY"]}


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


@pytest.fixture(scope="module")
def session(client: Client) -> Iterator[Session]:
    """A session shared by a module's tests."""
    with client.create_session(TEMPLATE) as s:
        yield s


@pytest.fixture
def unique() -> str:
    """A name no other test uses."""
    return uuid.uuid4().hex[:12]
