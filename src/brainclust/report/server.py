"""``brainclust view RUN``: a local web server that explores every image of a run.

Standard library only (:class:`http.server.ThreadingHTTPServer`): the page is
the report's explorer (:file:`templates/explorer.js`) in server mode; the
server answers with the points in view or a density image
(:mod:`brainclust.report.viewquery`) and makes thumbnails on demand
(:mod:`brainclust.report.thumbcache`).

Security: the run folder is untrusted input and the data may be private.

* It listens on 127.0.0.1 unless ``host`` says otherwise (then a warning is
  logged); on a loopback address, a request whose ``Host`` header names
  another host is refused (403), so a web page cannot reach the server through
  DNS rebinding.
* No URL maps to a file. The routes are a fixed list matched on the raw,
  still percent-encoded path; an image is asked for by its row number in
  ``assignments.csv`` (``/thumb/123``), never by a path, and that row's path is
  refused (403) when it is absolute, holds ``..``, or resolves (links followed)
  outside the data folder recorded in ``manifest.json``; a DICOM image that may
  show patient text in its pixels is withheld (403, the placeholder picture). An
  image that cannot be read is 404, and so is anything else.
* Only GET and HEAD; every answer carries a strict Content-Security-Policy,
  ``nosniff``, ``no-referrer`` and ``frame-ancestors 'none'``.
* A request another site's page makes (``Sec-Fetch-Site`` other than
  ``same-origin`` or ``none``, or an ``Origin`` other than the server's own) is
  refused (403), so no page can make the server draw tiles or search names
  blind; only a navigation to the page itself (``/``, a link followed) passes.
* A connection that sends nothing for :data:`IDLE_TIMEOUT` seconds is closed, and so is one whose request line
  and headers take more than :data:`~brainclust.report.connlimits.HEADER_DEADLINE` seconds all together (a client
  sending a byte now and then); at most :data:`~brainclust.report.connlimits.MAX_CONNECTIONS` connections are
  served at once, more are answered 503 and closed without a thread (:mod:`brainclust.report.connlimits`).
"""

from __future__ import annotations

import errno
import io
import ipaddress
import json
import logging
import os
import re
import socket
import socketserver
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from brainclust.errors import ParameterError
from brainclust.io.outputs import escape_name
from brainclust.model.scorespace import SPACE_NAMES, silhouette_space
from brainclust.report.connlimits import (HEADER_DEADLINE, MAX_CONNECTIONS, CappedThreadingMixIn, DeadlineReader,
                                          busy_answer)
from brainclust.report.runtext import within_scores
from brainclust.report.thumbcache import SIZES, ThumbCache, view_cache_dir
from brainclust.report.viewdata import ViewData
from brainclust.report.viewquery import POINT_LIMIT, Queries, as_float, as_int, parse_box, parse_focus
from brainclust.terminal import count_text

log = logging.getLogger(__name__)

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'none'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
VIEW_CSS = (b"body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d1d1f; "
            b"background: #fafafa; font-size: 14px; line-height: 1.45; }\n"
            b"main { max-width: 1400px; margin: 0 auto; padding: 12px 22px 40px; }\n"
            b"h1 { font-size: 20px; margin: 6px 0 4px; overflow-wrap: anywhere; }\n"
            b".note { color: #555; font-size: 13px; } code { font-size: 12.5px; overflow-wrap: anywhere; }\n"
            b"#headline { display: flex; flex-wrap: wrap; gap: 6px 10px; margin: 4px 0 6px; }\n"
            b"#headline .chip { background: #fff; border: 1px solid #ddd; border-radius: 14px; padding: 2px 11px; "
            b"font-size: 13px; }\n")
#: Seconds a connection may wait between the bytes of a request (or of an answer to a client that reads none).
IDLE_TIMEOUT = 30.0
#: ``Sec-Fetch-Site`` of the page's own requests (``same-origin``) and of a URL typed or bookmarked (``none``).
OWN_FETCH_SITES = ("same-origin", "none")
ROUTE_THUMB = re.compile(r"/thumb/(\d{1,10})")
ROUTE_ROW = re.compile(r"/api/row/(\d{1,10})")
#: Headers of every answer; ``Cache-Control`` follows them, as each answer says (``no-store`` by default).
SAFE_HEADERS = [("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"),
                ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY"),
                ("Cross-Origin-Resource-Policy", "same-origin")]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text)
        return True
    except ValueError:
        return False


def host_and_port(header: str) -> tuple[str, str]:
    """The name and port of a ``Host`` header, lower case; without a port, http's 80 (what browsers send for
    ``http://127.0.0.1/``): ``localhost`` is ``("localhost", "80")``, ``[::1]:8765`` is ``("[::1]", "8765")``."""
    host = header.strip().lower()
    if ":" not in host or host.endswith("]"):
        return host, "80"
    name, _, port = host.rpartition(":")
    return name, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(CappedThreadingMixIn, ThreadingHTTPServer):
    daemon_threads = True
    # POSIX: a port a stopped server left in TIME_WAIT binds again at once (a listening one is still refused);
    # Windows: SO_REUSEADDR would let two servers share a port, so not there
    allow_reuse_address = os.name == "posix"
    busy = busy_answer(SAFE_HEADERS + [("Cache-Control", "no-store")])

    def server_bind(self):
        """Bind without ``HTTPServer``'s ``socket.getfqdn`` of the address: a reverse DNS lookup that can wait long
        on a dead resolver before anything is served (``server_name`` is used for CGI only)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


class _Server6(_Server):
    address_family = socket.AF_INET6


class Explorer:
    """The state one server shares between requests: the run, its queries, thumbnails and page."""

    def __init__(self, run_dir, cache_dir=None, point_limit: int = POINT_LIMIT, local: bool = True):
        folder = view_cache_dir(cache_dir)
        self.data = ViewData(run_dir, cache_dir=folder)
        self.queries = Queries(self.data, point_limit)
        self.thumbs = ThumbCache(self.data, folder)
        self.heavy = threading.BoundedSemaphore(2)
        self.allowed_hosts: set[str] | None = None
        self.fqdn_added = local  #: a network bind adds its fully qualified name when first needed (_host_ok)
        self.assets = {"/explorer.js": ((TEMPLATES / "explorer.js").read_bytes(), "text/javascript; charset=utf-8"),
                       "/explorer.css": ((TEMPLATES / "explorer.css").read_bytes(), "text/css; charset=utf-8"),
                       "/view.css": (VIEW_CSS, "text/css; charset=utf-8")}
        self.page = self._page(run_dir, local).encode("utf-8")

    def _page(self, run_dir, local: bool) -> str:
        """The page; served beyond this computer (``local`` false), it names folders without their paths."""
        from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

        env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                          autoescape=select_autoescape(default=True, default_for_string=True))

        def shown(path) -> str:
            return escape_name(str(path) if local else Path(str(path)).name)
        meta = self.data.meta()
        space = silhouette_space(self.data.manifest)  # the UMAP or a kept SSL embedding: named, with its note
        names = {"silhouette": "Silhouette" + SPACE_NAMES.get(space["space"], ""), "ari": "ARI", "nmi": "NMI",
                 "fmi": "FMI", "acc": "ACC"}
        clusters = self.data.by_name.get("cluster")
        n_clusters = len({c for c in clusters.raw if c != "-1"}) if clusters else 0
        return env.get_template("view.html.j2").render(
            title=meta["title"], meta=meta, n_total=f"{self.data.n:,} image" + ("" if self.data.n == 1 else "s"),
            scores=[(names[k], f"{v:.3f}") for k, v in meta["scores"].items()], silhouette_note=space["note"],
            within_scores=within_scores(self.data.metrics, n_clusters),  # --within: as the report shows them
            n_clusters=count_text(n_clusters, "cluster") if clusters else "",
            run_dir=shown(Path(run_dir).resolve()), input=shown(self.data.root or ""),
            cache=shown(self.thumbs.dir), map_source=self.data.map_source, local=local)

    def close(self) -> None:
        self.thumbs.close()


class ExplorerHandler(BaseHTTPRequestHandler):
    """The requests of one :class:`Explorer` (``ex``, set by :func:`make_handler`)."""

    ex: Explorer
    server_version = "brainclust-view"
    sys_version = ""
    timeout = IDLE_TIMEOUT  # on the socket: a half-sent request is dropped (``handle_one_request``), never waited on
    header_deadline = HEADER_DEADLINE  # for the request line and headers together: a slow drip is dropped too

    def setup(self):
        super().setup()
        self.rfile.close()  # the socket's own reader, replaced by one that keeps the deadline
        self.reader = DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self):
        self.reader.until(time.monotonic() + self.header_deadline)  # lifted once the headers are read
        super().handle_one_request()

    def parse_request(self):
        try:
            return super().parse_request()
        finally:
            self.reader.until(None)

    def log_message(self, fmt, *args):  # the library never prints
        log.debug("view: %s %s", self.address_string(), fmt % args)

    def _headers(self, code: int, ctype: str, length: int | None, cache: str = "no-store", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in SAFE_HEADERS:
            self.send_header(k, v)
        self.send_header("Cache-Control", cache)
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()

    def _send(self, code: int, body: bytes, ctype: str, cache: str = "no-store", extra=()):
        self._headers(code, ctype, len(body), cache, extra)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, code: int = 200):
        self._send(code, json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8"),
                   "application/json; charset=utf-8")

    def _error(self, code: int, message: str):
        self._json({"error": message}, code)

    def _host_ok(self) -> bool:
        """The Host header names this server (DNS rebinding: a page of another site whose name now points here
        sends its own name): one of :attr:`Explorer.allowed_hosts`, or an IP address with the server's port."""
        if self.ex.allowed_hosts is None:
            return True
        name, port = host_and_port(self.headers.get("Host") or "")
        if port != str(self.server.server_address[1]):
            return False
        host = f"{name}:{port}"
        if host in self.ex.allowed_hosts or _is_ip(name):
            return True
        if not self.ex.fqdn_added:  # looked up on the first request that needs it, not at start-up: a reverse
            self.ex.allowed_hosts.add(f"{socket.getfqdn()}:{port}".lower())  # DNS lookup can wait long on a dead
            self.ex.fqdn_added = True  # resolver (two requests at once may both look it up: no harm)
        return host in self.ex.allowed_hosts

    def _own_request(self, path: str) -> bool:
        """Not made by another site's page: ``Sec-Fetch-Site`` (sent by browsers) ``same-origin`` or ``none``, and
        ``Origin``, when sent, this server's own; a navigation to the page itself (a link followed) from anywhere."""
        site = (self.headers.get("Sec-Fetch-Site") or "none").strip().lower()
        if path == "/" and (self.headers.get("Sec-Fetch-Mode") or "").strip().lower() == "navigate":
            return True
        origin, (name, port) = self.headers.get("Origin"), host_and_port(self.headers.get("Host") or "")
        own = f"http://{name}" + ("" if port == "80" else f":{port}")  # as a browser writes it: no default port
        return site in OWN_FETCH_SITES and (origin is None or origin.strip().lower() == own)

    def do_GET(self):
        try:
            self._route()
        except ParameterError as exc:
            self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # a client gone, or reading nothing
            self.close_connection = True
        except Exception:  # noqa: BLE001 - one failed request never stops the server
            log.exception("view: request %r failed", self.path[:200])
            self._error(500, "internal error; see the server's log")

    do_HEAD = do_GET

    def _refuse_method(self):
        self._send(405, b'{"error": "only GET and HEAD"}', "application/json; charset=utf-8",
                   extra=[("Allow", "GET, HEAD")])

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def send_error(self, code, message=None, explain=None):
        """The library's own errors (a malformed request line, an unknown method, a request too long) in the
        server's form, with its headers (CSP, nosniff...), never its default HTML page."""
        self.close_connection = True
        self._error(int(code), str(message or HTTPStatus(int(code)).phrase)[:200])

    def _route(self):
        if not self._host_ok():
            return self._error(403, "this server answers requests for 127.0.0.1 or localhost only")
        if len(self.path) > 16384:
            return self._error(414, "request too long")
        url = urlsplit(self.path)
        path = url.path
        if not self._own_request(path):  # logged at debug level, as every request (log_message)
            return self._error(403, "this server answers its own page only, not requests of another site")
        try:
            params = dict(parse_qsl(url.query, keep_blank_values=True, max_num_fields=24))
        except ValueError:  # more fields than any route takes
            return self._error(400, "too many query parameters (at most 24)")
        if path == "/":
            return self._send(200, self.ex.page, "text/html; charset=utf-8")
        if path in self.ex.assets:
            body, ctype = self.ex.assets[path]
            return self._send(200, body, ctype, "no-cache")
        if path == "/favicon.ico":
            return self._send(204, b"", "image/x-icon")
        m = ROUTE_THUMB.fullmatch(path)
        if m:
            return self._thumb(int(m.group(1)), params)
        m = ROUTE_ROW.fullmatch(path)
        if m:
            return self._row(int(m.group(1)))
        if path == "/api/meta":
            return self._json(self.ex.data.meta())
        if path in ("/api/view", "/api/tile", "/api/list", "/api/list.csv", "/api/nearest"):
            with self.ex.heavy:
                return self._api(path, params)
        return self._error(404, "not found")

    def _index(self, i: int) -> int | None:
        return i if 0 <= i < self.ex.data.n else None

    def _thumb(self, i: int, params: dict):
        if self._index(i) is None:
            return self._error(404, "no such image")
        px = as_int(params.get("px", "256"), "px", 1, max(SIZES))
        if px not in SIZES:
            raise ParameterError(f"px: one of {', '.join(map(str, SIZES))}, got {px}")
        body, status = self.ex.thumbs.get(i, px)
        # refused (a path out of the data folder, or bytes that are not the run's) or withheld (a DICOM image
        # that may show patient text): it exists but is not shown, a placeholder with 403; unreadable: 404
        self._send({"ok": 200, "missing": 404}.get(status, 403), body, "image/jpeg",
                   "private, max-age=3600" if status == "ok" else "no-store")

    def _row(self, i: int):
        if self._index(i) is None:
            return self._error(404, "no such image")
        row = self.ex.data.row(i)
        self._json({"i": i, "caption": self.ex.data.caption(i), "cells": [[k, v] for k, v in row.items()]})

    def _api(self, path: str, params: dict):
        q, d = self.ex.queries, self.ex.data
        focus = parse_focus(params, d)
        if path == "/api/view":
            return self._json(q.view(parse_box(params), params.get("by", ""), focus))
        if path == "/api/tile":
            return self._send(200, q.tile(parse_box(params), params.get("by", ""), focus), "image/png")
        if path == "/api/nearest":
            i = q.nearest(as_float(params.get("x"), "x"), as_float(params.get("y"), "y"),
                          as_float(params.get("r"), "r"), focus)
            return self._json({"i": i, "caption": d.caption(i) if i is not None else None,
                               "name": d.shown_path(i) if i is not None else None})
        if path == "/api/list":
            offset = as_int(params.get("offset", "0"), "offset", 0, d.n)
            limit = as_int(params.get("limit", "48"), "limit", 1, 500)
            return self._json(q.page(focus, offset, limit))
        self._headers(200, "text/csv; charset=utf-8", None,
                      extra=[("Content-Disposition", 'attachment; filename="selection.csv"')])
        if self.command != "HEAD":
            for chunk in q.csv_chunks(focus):
                self.wfile.write(chunk.encode("utf-8"))


def make_handler(ex: Explorer | None):
    """The request handler class bound to one :class:`Explorer`."""
    return type("Handler", (ExplorerHandler,), {"ex": ex})


def make_server(run_dir, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, cache_dir=None,
                point_limit: int = POINT_LIMIT, max_connections: int = MAX_CONNECTIONS):
    """Read the run and bind the server (not started), serving at most ``max_connections`` at once.
    Returns ``(server, explorer)``.

    Raises
    ------
    ModelFileError
        If ``run_dir`` is not a finished run.
    ParameterError
        If the port is taken or out of range, the host cannot be listened on, the cache folder
        lies inside the run folder, or ``max_connections`` is not a positive integer.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"--port: must be an integer in 0..65535, got {port!r}")
    cache, run = os.path.realpath(view_cache_dir(cache_dir)), os.path.realpath(run_dir)
    if os.path.commonpath([cache, run]) == run:
        raise ParameterError(f"--cache-dir: '{cache_dir or cache}' lies inside the run folder '{run_dir}'; "
                             "'brainclust view' never writes the run folder: choose a cache folder outside it")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # --host [::1]
    cls, handler = (_Server6 if ":" in host else _Server), make_handler(None)
    try:  # bound before the run is read: a taken port is said at once, not after the map
        server = cls((host, port), handler, max_connections=max_connections)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ParameterError(f"--port {port}: {host}:{port} is already in use (another program or another "
                                 "'brainclust view'); choose another with --port") from None
        raise ParameterError(f"--host {host}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    try:
        local = is_loopback(host) or is_loopback(server.server_address[0])  # 127.1 is 127.0.0.1
        handler.ex = ex = Explorer(run_dir, cache_dir=cache_dir, point_limit=point_limit, local=local)
    except BaseException:
        server.server_close()
        raise
    bound = server.server_address[1]
    names = {host, "localhost"} | ({f"[{host}]"} if ":" in host else set())  # an IP address always passes
    if not local:  # reached by this computer's names too
        names.add(socket.gethostname())  # and its fully qualified name, looked up when first needed (_host_ok)
        log.warning("view: listening on %s:%d: anyone who can reach this computer on that address can see the "
                    "images and their names; use the default --host 127.0.0.1 unless you mean it", host, bound)
    ex.allowed_hosts = {f"{h}:{bound}".lower() for h in names}
    return server, ex


def all_interfaces(host: str) -> bool:
    """Whether ``--host`` ``host`` listens on every interface of this computer (``0.0.0.0``, ``::``, ``""``)."""
    try:
        return not host.strip("[]") or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def url_of(server) -> str:
    """The page's URL; a server on all interfaces at this computer's loopback address: a browser does not open
    ``http://0.0.0.0:8765/`` (other computers use this computer's name or address)."""
    host, port = server.server_address[:2]
    if all_interfaces(host):
        host = "::1" if ":" in host else "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(run_dir, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, cache_dir=None,
          point_limit: int = POINT_LIMIT, on_ready=None, max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve the explorer of ``run_dir`` until Ctrl-C (then return normally).

    Parameters
    ----------
    run_dir : path-like
        The ``--out`` folder of a finished run.
    host : str, default "127.0.0.1"
        Address to listen on.
    port : int, default 8765
        Port (0: any free port).
    cache_dir : path-like, optional
        Thumbnail (and computed map) cache; default ``$BRAINCLUST_CACHE/view`` or ``~/.cache/brainclust/view``.
    point_limit : int
        Most images drawn as points; more in view are drawn as density.
    on_ready : callable, optional
        Called with the page's URL once the server listens.
    max_connections : int, default 32
        Most connections served at once; more are answered 503 and closed.
    """
    server, ex = make_server(run_dir, host, port, cache_dir=cache_dir, point_limit=point_limit,
                             max_connections=max_connections)
    url = url_of(server)
    log.debug("view: %d images of %s at %s (Ctrl-C stops)", ex.data.n, run_dir, url)
    try:
        if on_ready is not None:
            on_ready(url)
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        log.debug("view: stopped")  # the command says so on stdout
    finally:
        server.server_close()
        ex.close()
