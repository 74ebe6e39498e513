"""``brainclust view``'s limits on connections: a cap on those served at once, and a deadline for a request's
line and headers (a client sending one byte just before each idle timeout held a thread for ever)."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time

import pytest
from explorer_fixtures import make_run

from brainclust.errors import ParameterError
from brainclust.report import connlimits
from brainclust.report import server as srv

CAP = 3


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("view_limits")
    out = make_run(tmp, n_per=4, with_map=True)
    server, ex = srv.make_server(out, port=0, cache_dir=tmp / "cache", max_connections=CAP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()
    ex.close()


def meta_status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/meta", headers={"Host": f"127.0.0.1:{port}"})
        res = conn.getresponse()
        res.read()
        return res.status
    finally:
        conn.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout, 10 s, fails the test)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def serving_threads() -> int:
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def test_the_defaults_and_a_bad_cap(tmp_path):
    assert connlimits.MAX_CONNECTIONS == 32 and 0 < connlimits.HEADER_DEADLINE <= 60
    assert srv.ExplorerHandler.header_deadline == connlimits.HEADER_DEADLINE
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ParameterError, match="max_connections"):  # said before anything is bound or read
            srv.make_server(tmp_path / "not-a-run", port=0, cache_dir=tmp_path / "c", max_connections=bad)


def test_connections_over_the_cap_are_answered_503_at_once_and_the_server_recovers(capped):
    port = capped.server_address[1]
    assert meta_status(port) == 200
    threads_before = serving_threads()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(CAP)]  # send nothing
    try:
        # accepted in order, after the idle ones: each is answered without a request and without a thread
        for _ in range(4 * CAP):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                answer = read_all(s)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 503 "), answer[:200]
            assert b"\r\nRetry-After: 1" in head and b"\r\nContent-Security-Policy: default-src 'none'" in head
            assert b"too many connections" in body
        assert CAP <= serving_threads() <= threads_before + CAP  # the idle ones' threads, no more
        try:  # a real request over the cap: 503, or closed unread if it came after the answer
            status = meta_status(port)
        except (OSError, http.client.HTTPException):
            status = None
        assert status in (503, None)
    finally:
        for s in idle:
            s.close()
    t0 = time.monotonic()  # their threads see the ends and give their places back
    while True:
        try:
            if meta_status(port) == 200:
                break
        except (OSError, http.client.HTTPException):  # reset while refused
            pass
        assert time.monotonic() - t0 < 30, "the server did not recover once the idle connections closed"
        time.sleep(0.05)


def drip(port: int, seconds: float, gap: float = 0.05) -> tuple[bool, int]:
    """Send a request's line and headers one byte every ``gap`` seconds (never finished) for up to ``seconds``:
    ``(cut off by the server, bytes sent)``."""
    request = b"GET /api/meta HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nX-Drip: " % port + b"a" * 60000
    sent, t0 = 0, time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        while time.monotonic() - t0 < seconds:
            try:
                s.sendall(request[sent:sent + 1])
                sent += 1
                if select.select([s], [], [], gap)[0]:
                    return s.recv(100) == b"", sent  # closed, nothing answered
            except OSError:  # reset: cut off as well
                return True, sent
    return False, sent


def test_a_drip_fed_request_is_cut_off_at_the_header_deadline(capped, monkeypatch):
    """Each byte comes well within the idle timeout (30 s); only the overall deadline ends it."""
    port = capped.server_address[1]
    assert capped.RequestHandlerClass.timeout >= 10
    monkeypatch.setattr(capped.RequestHandlerClass, "header_deadline", 1.0)
    t0 = time.monotonic()
    cut, sent = drip(port, seconds=25)
    assert cut, f"a drip of {sent} bytes over {time.monotonic() - t0:.1f} s was still being read"
    assert sent > 3  # it was dripping, not refused at once
    assert meta_status(port) == 200  # others are answered meanwhile and after


def test_a_slow_but_whole_request_within_the_deadline_is_answered(capped, monkeypatch):
    port = capped.server_address[1]
    monkeypatch.setattr(capped.RequestHandlerClass, "header_deadline", 20.0)
    request = b"GET /api/meta HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i in range(0, len(request), 8):
            s.sendall(request[i:i + 8])
            time.sleep(0.02)
        time.sleep(0.3)  # the answer is read late: the deadline was lifted once the headers came
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.0 200 ") and b'"title"' in answer


def test_a_client_that_resets_mid_request_is_no_traceback(capped, capfd):
    """The standard library printed a traceback on stderr for a connection reset while reading the request."""
    import struct

    port = capped.server_address[1]
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /api/meta HTTP/1.0\r\nHost: 127.0.0.1")  # half the headers
        time.sleep(0.2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        s.close()
    time.sleep(0.5)
    assert meta_status(port) == 200
    assert "Traceback" not in capfd.readouterr().err
