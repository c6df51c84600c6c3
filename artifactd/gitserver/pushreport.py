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
        if self._sideband is None and self._outer:
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
        while len(self._outer) >= 4:
            size = _length(self._outer[:4])
            if size is None:
                self._done = True
                break
            if size == 0:  # flush: end of the side-band stream
                self._done = True
                break
            if size < 4 or len(self._outer) < size:
                if size < 4:
                    self._done = True
                break
            packet = bytes(self._outer[4:size])
            del self._outer[:size]
            if packet[:1] == b"\x01":
                self._inner += packet[1:]
                self._scan_inner()
                if self.updated:
                    break
        return self.updated

    def _scan_inner(self) -> None:
        while len(self._inner) >= 4 and not self.updated:
            size = _length(self._inner[:4])
            if size is None:
                self._done = True
                return
            if size == 0:
                del self._inner[:4]
                continue
            if size < 4 or len(self._inner) < size:
                if size < 4:
                    self._done = True
                return
            line = bytes(self._inner[4:size])
            del self._inner[:size]
            if line.startswith(b"ok "):
                self.updated = True


def _length(head: bytes | bytearray) -> int | None:
    try:
        return int(head, 16)
    except ValueError:
        return None
