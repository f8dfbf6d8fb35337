"""httpx transports that misbehave on purpose, between the client and the live server.

Each forwards requests to the real server and records them; ``faults`` decides, per request,
what goes wrong: the answer is dropped after the server handled the request (the client sees a
broken connection), the request is refused with a made-up status, or a Server-Sent Events
answer is cut after a number of events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterator, List, Optional

import httpx


@dataclass
class Fault:
    """What to do to one request: ``drop`` its answer, answer ``status`` instead of sending it
    (with ``retry_after``), or ``cut_after`` that many events of its stream (``None``: nothing)."""

    drop: bool = False
    status: Optional[int] = None
    retry_after: Optional[str] = None
    code: str = "made_up"
    cut_after: Optional[int] = None


# Decides the fault for a request (from what was sent so far), or None.
Faults = Callable[[httpx.Request, List[httpx.Request]], Optional[Fault]]


@dataclass
class Recorder:
    faults: Faults
    requests: List[httpx.Request] = field(default_factory=list)
    dropped: List[bytes] = field(default_factory=list)

    def matching(self, method: str, fragment: str) -> List[httpx.Request]:
        return [r for r in self.requests if r.method == method and fragment in r.url.path]

    def _decide(self, request: httpx.Request) -> Optional[Fault]:
        fault = self.faults(request, self.requests)
        self.requests.append(request)
        return fault

    @staticmethod
    def _refusal(request: httpx.Request, fault: Fault) -> httpx.Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        body = {"code": fault.code, "message": "refused by the test transport", "request_id": "req_test"}
        return httpx.Response(fault.status or 503, headers=headers, json=body, request=request)


def _cut(buffer: bytes, events: int) -> Optional[bytes]:
    """``buffer`` up to its ``events``-th complete event and a piece of the next, or None when
    it holds fewer."""
    end = -2
    for _ in range(events):
        end = buffer.find(b"\n\n", end + 2)
        if end < 0:
            return None
    return buffer[: end + 2] + b"event: std"


class CutStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, events: int) -> None:
        self.inner, self.events = inner, events

    def __iter__(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in self.inner:
            buffer += chunk
            head = _cut(buffer, self.events)
            if head is not None:
                yield head
                self.inner.close()
                raise httpx.ReadError("stream cut by the test transport")
        yield buffer

    def close(self) -> None:
        self.inner.close()


class FaultyTransport(httpx.BaseTransport, Recorder):
    def __init__(self, faults: Faults) -> None:
        Recorder.__init__(self, faults)
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._decide(request)
        if fault and fault.status:
            return self._refusal(request, fault)
        response = self.inner.handle_request(request)
        if fault and fault.drop:
            self.dropped.append(response.read())
            response.close()
            raise httpx.ReadError("answer dropped by the test transport")
        if fault and fault.cut_after is not None:
            assert isinstance(response.stream, httpx.SyncByteStream)
            return httpx.Response(response.status_code, headers=response.headers,
                                  stream=CutStream(response.stream, fault.cut_after), request=request)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncCutStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, events: int) -> None:
        self.inner, self.events = inner, events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        buffer = b""
        async for chunk in self.inner:
            buffer += chunk
            head = _cut(buffer, self.events)
            if head is not None:
                yield head
                await self.inner.aclose()
                raise httpx.ReadError("stream cut by the test transport")
        yield buffer

    async def aclose(self) -> None:
        await self.inner.aclose()


class AsyncFaultyTransport(httpx.AsyncBaseTransport, Recorder):
    def __init__(self, faults: Faults) -> None:
        Recorder.__init__(self, faults)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._decide(request)
        if fault and fault.status:
            return self._refusal(request, fault)
        response = await self.inner.handle_async_request(request)
        if fault and fault.drop:
            self.dropped.append(await response.aread())
            await response.aclose()
            raise httpx.ReadError("answer dropped by the test transport")
        if fault and fault.cut_after is not None:
            assert isinstance(response.stream, httpx.AsyncByteStream)
            return httpx.Response(response.status_code, headers=response.headers,
                                  stream=AsyncCutStream(response.stream, fault.cut_after), request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def first(method: str, fragment: str, fault: Fault, times: int = 1) -> Faults:
    """``fault`` for the first ``times`` requests of ``method`` whose path has ``fragment``."""

    def decide(request: httpx.Request, sent: List[httpx.Request]) -> Optional[Fault]:
        if request.method != method or fragment not in request.url.path:
            return None
        before = sum(1 for r in sent if r.method == method and fragment in r.url.path)
        return fault if before < times else None

    return decide
