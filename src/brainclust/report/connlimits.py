"""Limits on the connections of ``brainclust view``'s threading HTTP server (standard library only).

* :class:`CappedThreadingMixIn`: at most ``max_connections`` connections are served at once, one thread each; a
  connection over the cap is answered a short 503 by the accepting thread itself (one non-blocking send, never a
  wait on the client) and closed, so no thread is started for it and the threads stay bounded.
* :class:`DeadlineReader`: the request line and headers must arrive within one overall deadline, not only within
  an idle timeout between bytes: a client that sends one byte just before each idle timeout is cut off too.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time

from brainclust.errors import ParameterError

log = logging.getLogger(__name__)

#: Most connections served at once (one thread each); more are answered 503 and closed.
MAX_CONNECTIONS = 32
#: Seconds a request's line and headers may take to arrive, all together.
HEADER_DEADLINE = 30.0


def busy_answer(headers: list[tuple[str, str]]) -> bytes:
    """A whole HTTP 503 answer (JSON body, ``Retry-After: 1``, ``Connection: close``) with ``headers`` added."""
    body = b'{"error": "too many connections at once; try again"}'
    lines = ["HTTP/1.0 503 Service Unavailable", "Content-Type: application/json; charset=utf-8",
             f"Content-Length: {len(body)}", "Retry-After: 1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class CappedThreadingMixIn:
    """For a ``socketserver.ThreadingMixIn`` server (listed before it): a thread per connection up to
    ``max_connections`` (a keyword of the server's constructor); over it, :attr:`busy` and the connection closed."""

    busy = busy_answer([])
    refused = 0  #: connections refused so far (the first one is logged as a warning, the others at debug level)

    def __init__(self, *args, max_connections: int = MAX_CONNECTIONS, **kwargs):
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ParameterError(f"max_connections: must be a positive integer, got {max_connections!r}")
        self.max_connections, self.slots = max_connections, threading.BoundedSemaphore(max_connections)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            return self.refuse(request, client_address)
        try:
            super().process_request(request, client_address)  # starts the thread that releases the slot
        except BaseException:  # no thread started (the server closes the connection)
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        """A client that resets or drops its connection, or misses the deadline, is a debug line (not the
        standard library's traceback on stderr); anything else is logged with its traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("view: %s: connection closed (%s)", client_address[0], type(exc).__name__)
        else:
            log.exception("view: error while serving %s", client_address[0])

    def refuse(self, request, client_address) -> None:
        """Answer :attr:`busy` without waiting on the client, then close (what it sent already is read first, so
        the close seldom resets the connection before the client reads the answer)."""
        self.refused += 1
        (log.warning if self.refused == 1 else log.debug)(
            "view: %d connections at once, the most served; %s answered 503", self.max_connections, client_address[0])
        try:
            request.setblocking(False)
            try:
                request.recv(65536)
            except (BlockingIOError, InterruptedError):  # nothing sent yet
                pass
            request.send(self.busy)
        except OSError:  # gone, or its buffer full: it is closed all the same
            pass
        self.shutdown_request(request)


class DeadlineReader(io.RawIOBase):
    """A socket's bytes for :class:`io.BufferedReader`: each read waits at most ``idle`` seconds and, while
    :attr:`deadline` (a :func:`time.monotonic` time) is set, never past it (then :class:`TimeoutError`)."""

    def __init__(self, sock: socket.socket, idle: float | None):
        super().__init__()
        self.sock, self.idle, self.deadline = sock, idle, None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        wait = self.idle
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request's line and headers took too long")
            wait = left if wait is None else min(wait, left)
        self.sock.settimeout(wait)
        return self.sock.recv_into(buffer)

    def until(self, deadline: float | None) -> None:
        """Set (or, with None, lift) the deadline; lifted, the socket waits ``idle`` again (answers too)."""
        self.deadline = deadline
        if deadline is None:
            self.sock.settimeout(self.idle)
