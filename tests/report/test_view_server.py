"""``brainclust view``'s server: what it serves, what it refuses, and its answers checked against the run.

The server runs in a thread on an ephemeral port of 127.0.0.1; requests go
through ``http.client`` so that paths are sent exactly as written (no client
normalisation of ``..`` or ``%2e``). The run folder is tampered with: rows
whose path is ``../`` outside the data folder, absolute, or a symbolic link
leaving the data folder must never be read.
"""

from __future__ import annotations

import csv
import errno
import http.client
import io
import json
import re
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import record_hashes
from explorer_fixtures import make_run, read_rows
from PIL import Image

from brainclust.errors import ModelFileError, ParameterError
from brainclust.report import server as srv
from brainclust.report.mapcoords import normalise, save_map
from brainclust.report.thumbnails import jpeg_bytes, placeholder
from brainclust.report.viewdata import ViewData

SECRET = b"TOP-SECRET-BYTES"


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 30), value, np.uint8)).save(path, format="PNG")


def tampered_run(tmp: Path) -> tuple[Path, dict]:
    """A run whose assignments.csv also lists files outside its data folder (and one link inside it)."""
    out = make_run(tmp, n_per=20, with_map=True)
    data = tmp / "data"
    secret = tmp / "outside" / "secret.png"
    _png(secret, 77)
    with open(secret, "ab") as fh:
        fh.write(SECRET)
    (tmp / "outside" / "passwd").write_bytes(SECRET)
    os.symlink(secret, data / "class0" / "link_out.png")
    os.symlink(data / "class1" / "img_1000.png", data / "class0" / "link_in.png")
    rows = read_rows(out)
    extra = {"up": "../outside/secret.png", "abs": str(secret), "link_out": "class0/link_out.png",
             "link_in": "class0/link_in.png", "dotdot_mid": "class0/../../outside/secret.png"}
    index = {}
    for key, p in extra.items():
        index[key] = len(rows)
        rows.append({**rows[0], "path": p, "name": Path(p).name})
    with open(out / "assignments.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    manifest = json.loads((out / "manifest.json").read_text())  # a consistent tamper: the count follows
    (out / "manifest.json").write_text(json.dumps({**manifest, "n_images": len(rows)}))
    record_hashes(out, data)  # even with every hash right, a path out of the data folder is refused
    rng = np.random.default_rng(1)
    save_map(out, np.vstack([np.load(out / "map.npy"), rng.normal(size=(len(extra), 2))]))
    return out, index


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("view")
    out, index = tampered_run(tmp)
    server, ex = srv.make_server(out, port=0, cache_dir=tmp / "cache", point_limit=20)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, ex, out, index, tmp
    server.shutdown()
    server.server_close()
    ex.close()


def get(server, path: str, host: str | None = None, method: str = "GET", headers: dict | None = None):
    address, port = server.server_address[:2]
    conn = http.client.HTTPConnection(address if address.startswith("127.") else "127.0.0.1", port, timeout=30)
    headers = ({"Host": host} if host else {}) | (headers or {})
    conn.putrequest(method, path, skip_host=bool(host), skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, dict(res.getheaders()), body


def jget(server, path: str):
    status, _, body = get(server, path)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def test_listens_on_loopback_only_by_default(running):
    server = running[0]
    assert server.server_address[0] == "127.0.0.1"
    assert srv.DEFAULT_HOST == "127.0.0.1"
    try:  # an address of this machine other than loopback, if it has one
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
    except OSError:
        ip = None
    if ip and not ip.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((ip, server.server_address[1]), timeout=2).close()


def test_page_assets_and_security_headers(running):
    server = running[0]
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    page = body.decode()
    assert '<script src="/explorer.js"></script>' in page and "<script>" not in page
    assert "<img src=x" not in page                                  # hostile names escaped in the JSON
    meta = json.loads(page.split('id="map-data">')[1].split("</script>")[0])
    assert meta["mode"] == "server" and meta["n_total"] == len(read_rows(running[2]))
    status, headers, js = get(server, "/explorer.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"brainclustExplorer" in js


def test_thumbnails_come_back_and_are_cached(running):
    server, ex, out, _, tmp = running
    status, headers, body = get(server, "/thumb/3?px=128")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(body)) as im:
        assert im.format == "JPEG" and max(im.size) == 24               # 20 x 24 original: never enlarged
    cached = ex.thumbs.dir / "3-128.jpg"
    assert cached.read_bytes() == body and tmp / "cache" in cached.parents
    assert get(server, "/thumb/3?px=128")[2] == body


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/..%2f..%2foutside/passwd",
    "/thumb/..%2f..%2foutside%2fsecret.png", "/thumb/../../outside/secret.png", "/thumb/%2e%2e%2fsecret",
    "/thumb/0/../../../outside/secret.png", "//etc/passwd", "/etc/passwd", "/outside/secret.png",
    "/data/class0/img_0000.png", "/explorer.js/../../outside/passwd", "/thumb/-1", "/thumb/1e3", "/thumb/99999",
    "/api/row/99999", "/api/../thumb/0", "/thumb/0%00", "/%252e%252e/outside/passwd", "/thumb/%30",
])
def test_paths_outside_the_routes_are_refused(running, path):
    server = running[0]
    status, _, body = get(server, path)
    assert status in (403, 404)
    assert SECRET not in body and b"root:" not in body


@pytest.mark.parametrize("key", ["up", "abs", "link_out", "dotdot_mid"])
def test_tampered_rows_are_never_read(running, key):
    server, _, _, index, _ = running
    status, headers, body = get(server, f"/thumb/{index[key]}?px=128")
    assert status == 403 and SECRET not in body and body == jpeg_bytes(placeholder(128))  # a grey cross, no image
    assert headers["Cache-Control"] == "no-store"


def test_too_many_query_parameters_are_a_bad_request(running):
    server = running[0]
    status, _, body = get(server, "/api/meta?" + "&".join(f"a{i}=1" for i in range(30)))
    assert status == 400 and b"too many query parameters" in body


def test_a_cached_thumbnail_is_not_served_once_its_file_changes_or_is_deleted(tmp_path):
    out = make_run(tmp_path, n_per=4, with_map=True)
    server, ex = srv.make_server(out, port=0, cache_dir=tmp_path / "cache", point_limit=20)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rows = read_rows(out)
        first = get(server, "/thumb/0?px=64")
        assert first[0] == 200 and first[2] != jpeg_bytes(placeholder(64))
        assert list((tmp_path / "cache").rglob("0-64.jpg")) and get(server, "/thumb/0?px=64")[2] == first[2]
        src = tmp_path / "data" / rows[0]["path"]
        _png(src, 7)  # other bytes: the cached picture of the old ones must not be shown
        status, _, body = get(server, "/thumb/0?px=64")
        assert status == 403 and body == jpeg_bytes(placeholder(64))
        src.unlink()
        assert get(server, "/thumb/0?px=64")[0] == 404
    finally:
        server.shutdown()
        server.server_close()
        ex.close()


def test_a_link_inside_the_data_folder_is_served(running):
    server, _, _, index, _ = running
    status, headers, _ = get(server, f"/thumb/{index['link_in']}?px=64")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"


def test_host_header_and_methods(running):
    server = running[0]
    port = server.server_address[1]
    assert get(server, "/", host="evil.example")[0] == 403
    assert get(server, "/", host=f"evil.example:{port}")[0] == 403
    assert get(server, "/", host=f"localhost:{port}")[0] == 200
    assert get(server, "/", host=f"[::1]:{port}")[0] == 200  # an address is never a rebound name
    assert get(server, "/", host=f"127.0.0.1:{port + 1}")[0] == 403
    assert get(server, "/api/meta", method="POST")[0] == 405
    for method in ("POST", "TRACE", "CONNECT", "BREW"):  # the library's own 501 page carried no CSP
        status, headers, body = get(server, "/api/meta", method=method)
        assert status in (405, 501) and headers["Content-Security-Policy"] and b"<html" not in body.lower()
        assert headers.get("Allow") == "GET, HEAD" or status == 501
    assert get(server, "/", method="HEAD")[2] == b""


def test_a_host_without_a_port_is_port_80(tmp_path, running):
    """Browsers and curl send ``Host: 127.0.0.1`` for ``http://127.0.0.1/``: on --port 80 every request was 403."""
    assert get(running[0], "/", host="127.0.0.1")[0] == 403  # port 80 is not this server's
    out = make_run(tmp_path, n_per=4, with_map=True)
    rng = np.random.default_rng()  # another program, or a closed server's TIME_WAIT, may hold an address's port 80
    for address in ["127.0.0.1"] + [f"127.{rng.integers(1, 255)}.{rng.integers(1, 255)}.{rng.integers(2, 255)}"
                                    for _ in range(6)]:
        try:
            server, ex = srv.make_server(out, host=address, port=80, cache_dir=tmp_path / "cache")
            break
        except ParameterError as exc:
            why = exc
    else:
        pytest.skip(f"port 80 cannot be listened on here ({why})")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for host in ("127.0.0.1", "localhost", "127.0.0.1:80", "[::1]"):
            assert get(server, "/api/meta", host=host)[0] == 200, host
        own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}  # a browser omits the port 80
        assert get(server, "/api/meta", host="localhost", headers=own)[0] == 200
        assert get(server, "/", host="evil.example")[0] == 403
        assert get(server, "/", host="127.0.0.1:81")[0] == 403
    finally:
        server.shutdown()
        server.server_close()
        ex.close()


def test_the_port_of_a_host_header():
    assert srv.host_and_port("127.0.0.1") == ("127.0.0.1", "80")
    assert srv.host_and_port("LocalHost") == ("localhost", "80")
    assert srv.host_and_port("[::1]") == ("[::1]", "80")
    assert srv.host_and_port("[::1]:8765") == ("[::1]", "8765")


TILE = "/api/tile?x0=0&y0=0&x1=1&y1=1&w=64&h=64"


@pytest.mark.parametrize("path", [TILE, "/api/list.csv", "/api/list?q=img", "/thumb/0?px=64", "/api/meta", "/"])
def test_requests_of_another_site_are_refused(running, path, caplog):
    """Any page the user visits could make the server draw tiles or stream the CSV blind (and time name
    searches); the page's own requests and a URL typed in pass."""
    server = running[0]
    port = server.server_address[1]
    own = f"http://127.0.0.1:{port}"
    refused = [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},  # another port of this computer
               {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": f"http://localhost:{port}"},
               {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}]
    with caplog.at_level("DEBUG", logger="brainclust"):
        for headers in refused:
            status, got, body = get(server, path, headers=headers)
            assert status == 403 and "another site" in json.loads(body)["error"], headers
            assert got["Content-Security-Policy"]
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    for headers in ({}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"},
                    {"Sec-Fetch-Site": "same-origin", "Origin": own}):
        assert get(server, path, headers=headers)[0] == 200, headers
    cross_link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert get(server, path, headers=cross_link)[0] == (200 if path == "/" else 403)  # a link to the page


def test_a_half_sent_request_is_dropped_after_the_idle_timeout(running, monkeypatch):
    """300 half-sent requests each held a server thread for ever (no timeout)."""
    server = running[0]
    port = server.server_address[1]
    assert srv.ExplorerHandler.timeout is not None and 0 < srv.ExplorerHandler.timeout <= 60
    monkeypatch.setattr(server.RequestHandlerClass, "timeout", 0.5)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    t0 = time.monotonic()
    for s in socks:
        s.sendall(b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)  # headers never finished
    assert get(server, "/api/meta")[0] == 200  # others are answered meanwhile
    for s in socks:
        with s:
            assert s.recv(100) == b""  # closed by the server, nothing answered
    assert time.monotonic() - t0 < 8


def _coords(out: Path) -> np.ndarray:
    return normalise(np.load(out / "map.npy"))


def test_view_points_exactly_those_in_the_box_and_density_above_the_limit(running):
    server, _, out, _, _ = running
    xy = _coords(out)
    full = jget(server, "/api/view?x0=-1&y0=-1&x1=2&y1=2&w=200&h=100&by=cluster")
    assert full["count"] == len(xy) and full["mode"] == "density"     # 67 > point_limit 20
    x0, y0 = np.quantile(xy, 0.3, axis=0)
    x1, y1 = x0 + 0.08, y0 + 0.08
    inside = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1))
    v = jget(server, f"/api/view?x0={x0}&y0={y0}&x1={x1}&y1={y1}&w=50&h=50&by=label")
    assert v["count"] == len(inside) and v["mode"] == "points"
    assert v["i"] == inside.tolist()
    assert np.allclose(v["x"], xy[inside, 0], atol=1e-5)
    status, headers, png = get(server, "/api/tile?x0=-1&y0=-1&x1=2&y1=2&w=200&h=100&by=age")
    assert status == 200 and headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(png)) as im:
        a = np.asarray(im)
    assert a.shape == (100, 200, 4) and 0 < (a[..., 3] > 0).sum() <= len(xy)


def test_list_search_selection_category_and_csv(running):
    server, ex, out, _, _ = running
    rows = read_rows(out)
    xy = _coords(out)
    res = jget(server, "/api/list?q=IMG_1&limit=500")
    assert res["total"] == sum("img_1" in r["path"].lower() for r in rows)
    assert all("img_1" in it["name"].lower() for it in res["items"])
    sel = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    q = ";".join(f"{x},{y}" for x, y in sel)
    inside = np.flatnonzero((xy[:, 0] > 0) & (xy[:, 0] < 0.5) & (xy[:, 1] > 0) & (xy[:, 1] < 1))
    res = jget(server, f"/api/list?sel={q}&limit=500")
    assert [it["i"] for it in res["items"]] == inside.tolist()
    code = ex.data.by_name["cluster"].raw.index(rows[0]["cluster"])
    res = jget(server, f"/api/list?fcol=cluster&fcode={code}&limit=10&offset=0")
    assert res["total"] == sum(r["cluster"] == rows[0]["cluster"] for r in rows) and len(res["items"]) == 10
    status, headers, body = get(server, f"/api/list.csv?sel={q}")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    got = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert [int(r["row"]) - 1 for r in got] == inside.tolist()
    for r in got:
        assert {k: r[k] for k in rows[0]} == rows[int(r["row"]) - 1]     # raw values, every column


def test_row_and_nearest(running):
    server, _, out, _, _ = running
    rows = read_rows(out)
    xy = _coords(out)
    r = jget(server, "/api/row/7")
    assert dict(r["cells"]) == rows[7] and r["caption"].startswith(rows[7]["path"] + " | cluster ")
    n = jget(server, f"/api/nearest?x={xy[7, 0]}&y={xy[7, 1]}&r=0.001")
    d = np.hypot(xy[:, 0] - xy[7, 0], xy[:, 1] - xy[7, 1])
    assert n["i"] in np.flatnonzero(d <= 1e-6).tolist()
    assert jget(server, "/api/nearest?x=5&y=5&r=0.01")["i"] is None


@pytest.mark.parametrize("query", [
    "/api/view?x0=0&y0=0&x1=1&y1=1&w=0&h=10", "/api/view?x0=nan&y0=0&x1=1&y1=1&w=10&h=10",
    "/api/view?x0=1&y0=0&x1=0&y1=1&w=10&h=10", "/api/list?sel=1,2;3", "/api/list?fcol=path&fcode=0",
    "/api/list?fcol=cluster&fcode=999", "/api/list?limit=100000", "/thumb/0?px=100", "/api/nearest?x=0&y=0",
])
def test_bad_parameters_are_400(running, query):
    status, _, body = get(running[0], query)
    assert status == 400 and "error" in json.loads(body)


@pytest.mark.parametrize("query, error", [
    ("/api/view?y0=0&x1=1&y1=1&w=10&h=10", "x0: missing; a number is needed"),
    ("/api/view?x0=0&y0=0&x1=1&y1=1&h=10", "w: missing; an integer in 1..1024 is needed"),
    ("/api/nearest?x=0&y=0", "r: missing; a number is needed"),
    ("/api/list?fcol=cluster", "fcode: missing; an integer in 0.."),  # up to the number of clusters
])
def test_a_missing_parameter_is_said_missing(running, query, error):
    """A request without x0 answered "x0: must be a number, got 'None'"."""
    status, _, body = get(running[0], query)
    assert status == 400 and json.loads(body)["error"].startswith(error)


def test_not_a_run_and_port_taken(tmp_path, capsys):
    with pytest.raises(ModelFileError, match="not a finished brainclust run"):
        ViewData(tmp_path)
    from brainclust import cli

    assert cli.main(["view", str(tmp_path / "nowhere"), "--port", "0", "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("brainclust: error: ")
    out = make_run(tmp_path / "r", n_per=4, with_map=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ParameterError, match=f"--port {port}: .*already in use"):
            srv.make_server(out, port=port, cache_dir=tmp_path / "c")


def test_a_taken_port_is_said_before_the_run_is_read(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ParameterError, match="already in use"):  # not "is not a finished brainclust run"
            srv.make_server(tmp_path / "no_run_here", port=port, cache_dir=tmp_path / "cache")


@pytest.mark.skipif(os.name != "posix", reason="SO_REUSEADDR is set on POSIX only")
def test_a_port_a_stopped_server_left_in_time_wait_binds_again(tmp_path):
    """Ctrl-C, then the same command at once: the server closed its connections first, so the port is in
    TIME_WAIT for a minute; that is no program using it (it was refused as 'already in use')."""
    out = make_run(tmp_path, n_per=4, with_map=True)
    server, ex = srv.make_server(out, port=0, cache_dir=tmp_path / "c")
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(f"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        while c.recv(65536):  # the server closes first: its side of the port goes to TIME_WAIT
            pass
    server.shutdown()
    server.server_close()
    ex.close()
    again, ex = srv.make_server(out, port=port, cache_dir=tmp_path / "c")
    try:
        assert again.server_address[1] == port
        with socket.socket() as s, pytest.raises(OSError) as taken:  # and a listening server still holds it
            s.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE
    finally:
        again.server_close()
        ex.close()


@pytest.mark.parametrize("host, local", [("0.0.0.0", False), ("127.1", True)])
def test_a_name_other_than_this_computers_is_refused_on_any_bind(tmp_path, host, local, caplog):
    """DNS rebinding (a page whose name now points here sends its own name) is refused whatever --host is;
    127.1 is this computer, served as such (it was taken for a network address, with the check off)."""
    out = make_run(tmp_path, n_per=4, with_map=True)
    with caplog.at_level("WARNING", logger="brainclust"):
        server, ex = srv.make_server(out, host=host, port=0, cache_dir=tmp_path / "cache")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert ("anyone who can reach this computer" in caplog.text) is not local
        assert get(server, "/", host=f"evil.example:{port}")[0] == 403
        assert get(server, "/", host=f"127.0.0.1:{port}")[0] == 200
        if not local:
            assert get(server, "/", host=f"10.1.2.3:{port}")[0] == 200  # the machine's address on a network
            assert get(server, "/", host=f"{socket.gethostname()}:{port}")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        ex.close()


def test_a_server_on_all_interfaces_prints_a_url_a_browser_opens(tmp_path, capsys, monkeypatch, caplog):
    """A walk: '--host 0.0.0.0' printed http://0.0.0.0:PORT/, which is no address a browser opens."""
    import socketserver
    import urllib.request

    from brainclust.cli import main

    out = make_run(tmp_path, n_per=4, with_map=True)
    server, ex = srv.make_server(out, host="0.0.0.0", port=0, cache_dir=tmp_path / "cache")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = srv.url_of(server)
        assert url == f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=30) as res:  # no proxy
            assert res.status == 200
    finally:
        server.shutdown()
        server.server_close()
        ex.close()

    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt  # Ctrl-C at once: the line is printed before

    monkeypatch.setattr(socketserver.BaseServer, "serve_forever", interrupted)
    with caplog.at_level("WARNING", logger="brainclust"):
        assert main(["view", str(out), "--host", "0.0.0.0", "--port", "0", "--cache-dir", str(tmp_path / "c")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "http://" in ln)
    assert re.fullmatch(r"brainclust view: http://127\.0\.0\.1:\d+/ \(on this computer; it listens on all "
                        r"interfaces: other computers use this computer's name or address; Ctrl-C stops\)", line)
    assert "anyone who can reach this computer" in caplog.text  # the warning stays


def test_a_page_served_to_the_network_says_so_and_names_no_full_path(tmp_path):
    out = make_run(tmp_path, n_per=4, with_map=True)
    server, ex = srv.make_server(out, host="0.0.0.0", port=0, cache_dir=tmp_path / "cache")
    try:
        page = ex.page.decode()
        assert "Served to the network" in page and "on this computer only" not in page
        assert str(tmp_path) not in page and f"<code>{out.name}</code>" in page
    finally:
        server.server_close()
        ex.close()
    server, ex = srv.make_server(out, port=0, cache_dir=tmp_path / "cache")
    assert "Served on this computer only" in ex.page.decode() and str(out.resolve()) in ex.page.decode()
    server.server_close()
    ex.close()


def test_unwritable_cache_falls_back_to_a_temporary_folder(tmp_path):
    out = make_run(tmp_path, n_per=4, with_map=True)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    server, ex = srv.make_server(out, port=0, cache_dir=blocker / "cache")
    try:
        temp = ex.thumbs.dir
        assert blocker not in temp.parents and temp.is_dir()
        body, status = ex.thumbs.get(0, 64)
        assert status == "ok" and body[:2] == b"\xff\xd8"
    finally:
        server.server_close()
        ex.close()
    assert not temp.exists()


def test_map_is_computed_once_when_the_run_has_none(tmp_path):
    out = make_run(tmp_path, n_per=6)
    assert not (out / "map.npy").exists()
    first = ViewData(out, cache_dir=tmp_path / "cache")
    assert first.map_source == "computed by brainclust view"
    second = ViewData(out, cache_dir=tmp_path / "cache")
    assert second.map_source.startswith("computed earlier")
    assert np.array_equal(first.xy, second.xy)
    assert not (out / "map.npy").exists()                               # the run folder is never written


def test_a_within_run_without_cluster_npz_is_viewed(tmp_path):
    out = make_run(tmp_path, n_per=6)
    with np.load(out / "model" / "cluster.npz") as d:
        X, labels, levels = d["X_fit"], d["labels"], d["levels"]
    np.savez(out / "model" / "within.npz", X_fit=X, labels=labels, levels=levels, method="hierarchical")
    (out / "model" / "cluster.npz").unlink()                           # as --within writes its model
    view = ViewData(out, cache_dir=tmp_path / "cache")
    assert view.map_source == "computed by brainclust view" and view.xy.shape == (len(X), 2)
    (out / "model" / "within.npz").unlink()
    with pytest.raises(ModelFileError, match=r"neither map.npy nor model/cluster.npz \(nor model/within.npz, nor "):
        ViewData(out, cache_dir=tmp_path / "cache2")


def test_a_predict_folder_is_viewed_from_its_embeddings(tmp_path):
    """A 'brainclust predict' folder has no model: its map comes from embeddings.parquet's embedding."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = make_run(tmp_path, n_per=6)
    with np.load(out / "model" / "cluster.npz") as d:
        X = d["X_fit"].astype(np.float32)
    shutil.rmtree(out / "model")

    def embeddings(values, dim):
        col = pa.FixedSizeListArray.from_arrays(pa.array(values, pa.float32()), dim)
        pq.write_table(pa.table({"path": [f"p{i}" for i in range(len(col))], "embedding": col}),
                       out / "embeddings.parquet")

    embeddings(X.ravel(), X.shape[1])
    view = ViewData(out, cache_dir=tmp_path / "cache")
    assert view.map_source == "computed by brainclust view" and view.xy.shape == (len(X), 2)
    bad = X.copy()
    bad[3, 1] = np.nan
    embeddings(bad.ravel(), X.shape[1])
    with pytest.raises(ModelFileError, match="embeddings.parquet' is damaged: its embedding is not finite"):
        ViewData(out, cache_dir=tmp_path / "cache2")
    embeddings(X[:-1].ravel(), X.shape[1])
    with pytest.raises(ModelFileError, match=r"does not match embeddings.parquet \(%d images\)" % (len(X) - 1)):
        ViewData(out, cache_dir=tmp_path / "cache3")
    (out / "embeddings.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(ModelFileError, match="embeddings.parquet' is damaged"):
        ViewData(out, cache_dir=tmp_path / "cache4")
    # a review's crafted files: text vectors, and a 50 KB file declaring 10 million rows (read before refusing)
    texts = pa.FixedSizeListArray.from_arrays(pa.array(["1.5"] * X.size), X.shape[1])
    pq.write_table(pa.table({"embedding": texts}), out / "embeddings.parquet")
    with pytest.raises(ModelFileError, match="not vectors of numbers"):
        ViewData(out, cache_dir=tmp_path / "cache5")
    big = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(10_000_000 * 4, np.float32)), 4)
    pq.write_table(pa.table({"embedding": big}), out / "embeddings.parquet", compression="zstd")
    with pytest.raises(ModelFileError, match=r"does not match embeddings.parquet \(10000000 images\)"):
        ViewData(out, cache_dir=tmp_path / "cache6")
    # identical rows (a predict run over copies of one image): scikit-learn's t-SNE crashed the process on them
    embeddings(np.full(X.size, 0.25, np.float32), X.shape[1])
    same = ViewData(out, cache_dir=tmp_path / "cache7")
    assert np.isfinite(same.xy).all() and len(np.unique(same.xy, axis=0)) == 1


def test_ctrl_c_stops_cleanly(tmp_path):
    out = make_run(tmp_path, n_per=4, with_map=True)
    env = dict(os.environ, PYTHONPATH=str(Path(srv.__file__).parents[2]))
    # SIGINT as at a terminal: a suite started in the background (`cmd &` in a script) hands its children an
    # ignored SIGINT, and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-m", "brainclust", "view", str(out), "--port", "0",
                             "--cache-dir", str(tmp_path / "c")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert line.startswith("brainclust view: http://127.0.0.1:")
        port = int(line.split(":")[3].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/meta", headers={"Host": f"127.0.0.1:{port}"})
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in stdout
    with pytest.raises(OSError) as exc:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert exc.value.errno in (errno.ECONNREFUSED, None) or isinstance(exc.value, ConnectionRefusedError)


def test_a_network_bind_looks_up_its_full_name_on_first_need_not_at_start_up(tmp_path, monkeypatch):
    """socket.getfqdn() is a reverse DNS lookup: on a dead resolver it waited before the server started."""
    calls = []
    monkeypatch.setattr(socket, "getfqdn", lambda *a: calls.append(a) or "box.lab.example")
    out = make_run(tmp_path, n_per=4, with_map=True)
    server, ex = srv.make_server(out, host="0.0.0.0", port=0, cache_dir=tmp_path / "cache")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert calls == []
        assert get(server, "/", host=f"127.0.0.1:{port}")[0] == 200
        assert calls == []  # an address needs no name
        assert get(server, "/", host=f"box.lab.example:{port}")[0] == 200
        assert get(server, "/", host=f"evil.example:{port}")[0] == 403
        assert get(server, "/", host=f"box.lab.example:{port + 1}")[0] == 403
        assert len(calls) == 1
    finally:
        server.shutdown()
        server.server_close()
        ex.close()


def test_the_view_starts_coloured_as_the_report_is(tmp_path):
    """The map's first colouring in `view` is the report's: the last `report --color-by` (manifest report.color_by),
    else the run's --color-by, else cluster; a column the run no longer has falls back to cluster (it always
    started by cluster)."""
    import json

    out = make_run(tmp_path, n_per=6)
    manifest = json.loads((out / "manifest.json").read_text())
    for settings, report, first in (("site", None, "site"), ("site", "age", "age"), (None, "gone", "cluster"),
                                    (None, None, "cluster")):
        manifest["settings"]["color_by"] = settings
        manifest["report"] = {"color_by": report} if report else {}
        (out / "manifest.json").write_text(json.dumps(manifest))
        assert ViewData(out, cache_dir=tmp_path / "cache").meta()["colour"] == first, (settings, report)


def served_page(out: Path, cache: Path) -> str:
    """The view's page of run folder ``out`` (the server made, read and closed)."""
    server, ex = srv.make_server(out, port=0, cache_dir=cache)
    try:
        return ex.page.decode()
    finally:
        server.server_close()
        ex.close()


def test_the_view_names_the_space_of_a_silhouette_not_comparable_with_the_frozen_features(tmp_path):
    """The report said so of a kept self-supervised or UMAP embedding's silhouette; the view's headline showed a
    plain "Silhouette" (0.943 for TEMI) with no caveat."""
    import json

    out = make_run(tmp_path, n_per=6)
    manifest = json.loads((out / "manifest.json").read_text())
    for ssl, reduce, name in ((["temi"], "pca", "Silhouette (SSL embedding)"), ([], "umap", "Silhouette (UMAP)"),
                              ([], "pca", None)):
        manifest["settings"].update(ssl=ssl, reduce=reduce)
        (out / "manifest.json").write_text(json.dumps(manifest))
        page = served_page(out, tmp_path / "cache")
        if name is None:
            assert "Silhouette <b>" in page and "not comparable" not in page
        else:
            assert f"{name} <b>" in page and "not comparable with" in page, name


def test_the_view_shows_a_within_runs_scores_inside_the_strata(tmp_path):
    """A walk of the pages: the report of a --within run shows the mean NMI and ARI inside the strata
    (metrics.json within.scores) next to the scores of all strata together; the view showed only the latter."""
    out = make_run(tmp_path, n_per=6)
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "within": {"scores": {
        "mean_nmi": 0.0829, "mean_ari": 0.0225,
        "per_stratum": {"axial": {"ari": 0.18, "nmi": 0.2, "n": 6}, "coronal": {"ari": -0.04, "nmi": 0.03, "n": 6}}}}}))
    page = served_page(out, tmp_path / "cache")
    assert re.search(r'<span class="chip" id="chip-within" title="Mean NMI and ARI inside each stratum[^"]*">Within '
                     r"the strata: NMI <b>0.083</b>, ARI <b>0.022</b></span>", page)
    assert "over 2 scored strata of 2 (metrics.json within.scores)" in page
    (out / "metrics.json").write_text(json.dumps(metrics))  # a run without --within: no such chip
    assert "Within the strata" not in served_page(out, tmp_path / "cache")


def test_the_page_counts_in_the_singular_too(running, monkeypatch):
    """The page's chips said '1 images' and '1 clusters': one of a kind is singular, thousands are grouped."""
    server, ex, out = running[:3]
    page = get(server, "/")[2].decode()
    n = ex.data.n
    assert f'<span class="chip">{n:,} images</span>' in page and re.search(r'<span class="chip">\d+ clusters</span>',
                                                                          page)
    clusters = ex.data.by_name["cluster"]
    monkeypatch.setattr(ex.data, "n", 1)
    monkeypatch.setattr(clusters, "raw", ["0"])
    one = ex._page(out, True)
    assert '<span class="chip">1 image</span><span class="chip">1 cluster</span>' in one
    monkeypatch.setattr(ex.data, "n", 12345)
    assert '<span class="chip">12,345 images</span>' in ex._page(out, True)
