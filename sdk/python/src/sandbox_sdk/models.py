"""Typed views of the server's answers: executions, their rich results, files, contexts.

Each dataclass keeps the fields a client needs and the whole answer in ``raw``, so nothing the
server sends is lost (``Execution.raw["metrics"]``, ...).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

__all__ = ["Result", "ExecutionError", "Artifact", "Execution", "FileInfo", "UploadInfo"]

# Execution statuses after which nothing changes.
TERMINAL_STATUSES = frozenset({"completed", "failed", "timeout", "crashed", "cancelled"})


@dataclass
class Result:
    """One rich display output: a MIME bundle (``{"text/plain": ..., "image/png": ...}``).

    Text types are strings, binary ones (``image/png``, ``image/jpeg``, ``application/pdf``)
    base64, ``application/json`` any JSON value. ``is_main_result`` marks the value of a code
    context cell's last expression.
    """

    data: Dict[str, Any]
    metadata: Dict[str, Any] = field(default_factory=dict)
    is_main_result: bool = False

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Result":
        return cls(
            data=dict(d.get("data") or {}),
            metadata=dict(d.get("metadata") or {}),
            is_main_result=bool(d.get("is_main_result")),
        )

    @property
    def formats(self) -> List[str]:
        """The MIME types this output comes in."""
        return list(self.data)

    def _text(self, mime: str) -> Optional[str]:
        value = self.data.get(mime)
        return value if isinstance(value, str) else None

    def binary(self, mime: str) -> Optional[bytes]:
        """The output in a binary MIME type (base64 on the wire), decoded; ``None`` when absent."""
        value = self.data.get(mime)
        return base64.b64decode(value) if isinstance(value, str) else None

    @property
    def text(self) -> Optional[str]:
        """``text/plain``."""
        return self._text("text/plain")

    @property
    def html(self) -> Optional[str]:
        """``text/html``."""
        return self._text("text/html")

    @property
    def markdown(self) -> Optional[str]:
        """``text/markdown``."""
        return self._text("text/markdown")

    @property
    def svg(self) -> Optional[str]:
        """``image/svg+xml``."""
        return self._text("image/svg+xml")

    @property
    def json(self) -> Any:
        """``application/json`` (``None`` when absent)."""
        return self.data.get("application/json")

    @property
    def png(self) -> Optional[bytes]:
        """``image/png``, decoded."""
        return self.binary("image/png")

    @property
    def jpeg(self) -> Optional[bytes]:
        """``image/jpeg``, decoded."""
        return self.binary("image/jpeg")

    @property
    def pdf(self) -> Optional[bytes]:
        """``application/pdf``, decoded."""
        return self.binary("application/pdf")


@dataclass
class ExecutionError:
    """The uncaught exception that ended a Python or JavaScript execution."""

    name: str
    value: str
    traceback: str

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ExecutionError":
        return cls(str(d.get("name", "")), str(d.get("value", "")), str(d.get("traceback", "")))

    def __str__(self) -> str:
        return f"{self.name}: {self.value}" if self.value else self.name


@dataclass
class Artifact:
    """A workspace file an execution created, modified or deleted."""

    path: str
    type: str
    size: int
    mime_type: str

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Artifact":
        return cls(str(d["path"]), str(d["type"]), int(d.get("size", 0)), str(d.get("mime_type", "")))


@dataclass
class Execution:
    """A finished (or, past the server's wait, still running) execution.

    ``status`` is ``completed``, ``failed``, ``timeout``, ``crashed`` or ``cancelled`` once it
    ended. One that a client answered can be cancelled through it: :meth:`cancel` (from a
    ``Client``) or ``await`` :meth:`acancel` (from an ``AsyncClient``).
    """

    id: str
    session_id: str
    status: str
    stdout: str = ""
    stderr: str = ""
    exit_code: Optional[int] = None
    return_value: Any = None
    results: List[Result] = field(default_factory=list)
    error: Optional[ExecutionError] = None
    error_message: Optional[str] = None
    execution_time: Optional[float] = None
    language: Optional[str] = None
    context_id: Optional[str] = None
    results_truncated: bool = False
    artifacts: List[Artifact] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)
    # The client that answered it (for cancel), when one did.
    _client: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Execution":
        return cls(
            id=str(d["id"]),
            session_id=str(d["session_id"]),
            status=str(d["status"]),
            stdout=d.get("stdout") or "",
            stderr=d.get("stderr") or "",
            exit_code=d.get("exit_code"),
            return_value=d.get("return_value"),
            results=[Result.from_dict(r) for r in d.get("results") or []],
            error=ExecutionError.from_dict(d["error"]) if d.get("error") else None,
            error_message=d.get("error_message"),
            execution_time=d.get("execution_time"),
            language=d.get("language"),
            context_id=d.get("context_id"),
            results_truncated=bool(d.get("results_truncated")),
            artifacts=[Artifact.from_dict(a) for a in d.get("artifacts") or []],
            raw=d,
        )

    @property
    def ok(self) -> bool:
        """Whether it completed (exit code 0, no uncaught exception)."""
        return self.status == "completed"

    @property
    def finished(self) -> bool:
        """Whether it reached a terminal status."""
        return self.status in TERMINAL_STATUSES

    @property
    def cancelled(self) -> bool:
        """Whether it was cancelled (``POST /executions/{id}/cancel``)."""
        return self.status == "cancelled"

    def cancel(self) -> "Execution":
        """Cancel it if it still runs (its processes are killed; it ends ``cancelled``) and
        answer its state; an ended execution is answered as it is."""
        from .client import Client

        if not isinstance(self._client, Client):
            raise TypeError("this execution is not from a Client: use `await execution.acancel()` "
                            "for one from an AsyncClient, or session.cancel(execution_id)")
        return self._client.cancel_execution(self.id)

    async def acancel(self) -> "Execution":
        """:meth:`cancel`, for an execution an ``AsyncClient`` answered."""
        from .aio import AsyncClient

        if not isinstance(self._client, AsyncClient):
            raise TypeError("this execution is not from an AsyncClient: use execution.cancel()")
        return await self._client.cancel_execution(self.id)

    @property
    def main_result(self) -> Optional[Result]:
        """The value of a context cell's last expression, when it had one."""
        return next((r for r in self.results if r.is_main_result), None)

    @property
    def text(self) -> Optional[str]:
        """The main result's ``text/plain``, when there is one."""
        main = self.main_result
        return main.text if main else None


@dataclass
class FileInfo:
    """An entry of the workspace."""

    path: str
    name: str
    type: str
    size: int
    mime_type: Optional[str]
    modified_at: str

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FileInfo":
        return cls(
            path=str(d["path"]),
            name=str(d.get("name", "")),
            type=str(d.get("type", "file")),
            size=int(d.get("size", 0)),
            mime_type=d.get("mime_type"),
            modified_at=str(d.get("modified_at", "")),
        )

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"


@dataclass
class UploadInfo:
    """What an upload stored."""

    path: str
    size: int
    mime_type: str

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "UploadInfo":
        return cls(str(d["path"]), int(d["size"]), str(d.get("mime_type", "")))
