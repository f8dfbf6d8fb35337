"""Python client for the sandbox server's REST API.

Quick start::

    from sandbox_sdk import Client

    client = Client()  # SANDBOX_URL and SANDBOX_API_KEY from the environment
    with client.create_session("python-basic") as session:
        ctx = session.create_context("python")
        ctx.run("x = 41")
        print(ctx.run("x + 1").text)  # 42

The ``sandbox`` command-line tool and the server's MCP endpoint (``/mcp``) are the other ways in;
``AsyncClient`` offers the same surface with ``await``.
"""

from ._core import RetryPolicy
from .aio import AsyncClient, AsyncContext, AsyncExecutionHandle, AsyncFiles, AsyncSession
from .client import DEFAULT_TEMPLATE, Client, Context, ExecutionHandle, Files, Session
from .errors import (
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    FieldError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    SandboxError,
    ServerError,
    ServiceUnavailable,
    StreamError,
    ValidationError,
    WaitTimeout,
)
from .models import Artifact, Execution, ExecutionError, FileInfo, Result, UploadInfo

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TEMPLATE",
    "Client",
    "Session",
    "Context",
    "Files",
    "ExecutionHandle",
    "RetryPolicy",
    "AsyncClient",
    "AsyncSession",
    "AsyncContext",
    "AsyncFiles",
    "AsyncExecutionHandle",
    "Execution",
    "ExecutionError",
    "Result",
    "Artifact",
    "FileInfo",
    "UploadInfo",
    "SandboxError",
    "BadRequest",
    "AuthenticationError",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ValidationError",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "ConnectionFailed",
    "StreamError",
    "WaitTimeout",
    "ConfigurationError",
    "FieldError",
]
