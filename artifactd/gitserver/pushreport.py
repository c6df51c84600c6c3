"""Reading git receive-pack's report-status as it streams to the client.

A push updated the repo when its report carries an ``ok <ref>`` line. The server reads
the report on its way out and records the push before forwarding the bytes that say
so: the client never sees success for a push whose metadata is not written. (Asking
git instead -- a reference-transaction hook -- runs a shell twice per updated ref: 0.5 s
of a 97-ref mirror push, a third of its time; docs/benchmarks.md.)

The report is a pkt-line stream; with ``side-band-64k`` (every current client asks for
it) it travels inside band 1 of an outer pkt-line stream whose band 2 carries progress.
"""

from __future__ import annotations


#: What :func:`_take` returns for a malformed length, and for a flush packet.
_BAD = object()
_FLUSH = object()


class PushReport:
    """Feed receive-pack's stdout in order; :meth:`feed` says when the bytes so far
    include the first ``ok <ref>`` line."""

    def __init__(self) -> None:
        self._outer = bytearray()  # undecoded bytes of the outer stream
        self._inner = bytearray()  # undecoded bytes of the report stream (band 1)
        self._sideband: bool | None = None
        self._done = False  # outer flush seen, or the stream stopped making sense
        self.updated = False

    def feed(self, data: bytes) -> bool:
        """True once an ``ok <ref>`` line has been seen (in this chunk or before)."""
        if self.updated or self._done:
            return self.updated
        self._outer += data
        if self._sideband is None:
            # A report starts with "unpack ..." (a pkt-line: 4 hex digits); under
            # side-band the first packet's payload starts with its band number (1-3).
            if len(self._outer) < 5:
                return False
            self._sideband = self._outer[4] in (1, 2, 3)
        if not self._sideband:
            self._inner += self._outer
            self._outer.clear()
            self._scan_inner()
            return self.updated
        while not self.updated and not self._done:
            packet = _take(self._outer)
            if packet is None:
                break
            if packet is _BAD or packet is _FLUSH:  # garbage, or the end of the side-band stream
                self._done = True
            elif packet[:1] == b"\x01":
                self._inner += packet[1:]
                self._scan_inner()
        return self.updated

    def _scan_inner(self) -> None:
        while not self.updated and not self._done:
            line = _take(self._inner)
            if line is None:
                return
            if line is _BAD:
                self._done = True
            elif line is not _FLUSH and line.startswith(b"ok "):  # type: ignore[union-attr]
                self.updated = True


def _take(buf: bytearray) -> bytes | object | None:
    """Remove the next whole pkt-line from ``buf``: its payload (``_FLUSH`` for a flush
    packet), ``_BAD`` for a malformed length, None while it is incomplete."""
    if len(buf) < 4:
        return None
    try:
        size = int(buf[:4], 16)
    except ValueError:
        return _BAD
    if size == 0:
        del buf[:4]
        return _FLUSH
    if size < 4:
        return _BAD
    if len(buf) < size:
        return None
    payload = bytes(buf[4:size])
    del buf[:size]
    return payload
