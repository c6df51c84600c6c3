"""uvicorn's httptools protocol with two guards against hostile clients.

- **Header size**: httptools keeps every header a client sends; a connection whose
  request line and headers pass ``max_header_bytes`` gets ``431`` and is closed.
- **Header timeout**: a connection that opens and then sends its request head slowly (or
  nothing at all) is closed after ``header_timeout_seconds`` with ``408``. Bodies have
  their own idle timeout where they are read (Git) or are small (REST).
"""

from __future__ import annotations

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from artifactd.config import Settings


class HeaderTooLarge(Exception):
    pass


@functools.lru_cache(maxsize=1)
def _limits() -> tuple[int, float]:
    s = Settings()
    return s.max_header_bytes, s.header_timeout_seconds


def _reply(status: bytes, text: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\n\r\n" + text)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._max_head, self._head_timeout = _limits()
        self._head_bytes = 0
        self._in_head = True
        self._rejected = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport):  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if self._head_timeout and self._head_timeout > 0:
            self._head_timer = asyncio.get_running_loop().call_later(self._head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if self._in_head and not busy and not self.transport.is_closing():
            self._reject(b"408 Request Timeout", b"Request headers not received in time\n")

    def _reject(self, status: bytes, text: bytes) -> None:
        self._rejected = True
        self.transport.write(_reply(status, text))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._rejected:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._in_head = True
        if self._head_timer is None:
            self._arm()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._max_head and self._head_bytes > self._max_head and not self._rejected:
            self._reject(b"431 Request Header Fields Too Large",
                         f"Request headers exceed {self._max_head} bytes\n".encode())
            raise HeaderTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request on this keep-alive connection gets a fresh head timer when it
        # begins; uvicorn's keep-alive timeout covers the idle time in between.
        self._in_head = True
