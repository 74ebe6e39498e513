"""``brainclust view`` in headless Chromium: density, hover, click, zoom to points, box, search, colour, CSV.

The server's point limit is set low (30) so that a small real run is drawn as
density at first and as points once zoomed in. Expected answers come from the
run's files (map.npy, assignments.csv), not from the server. Skipped without
Chromium or websocket-client.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import numpy as np
import pytest
from explorer_fixtures import CHROMIUM, Chromium, make_run, read_rows

from brainclust.report import server as srv
from brainclust.report.mapcoords import normalise

pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewb")
    out = make_run(tmp, n_per=30, with_map=True)
    server, ex = srv.make_server(out, port=0, cache_dir=tmp / "cache", point_limit=30)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    downloads = tmp_path_factory.mktemp("dl")
    browser = Chromium(tmp_path_factory.mktemp("profile"))
    dt = browser.dt
    dt.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    url = srv.url_of(server)
    dt.open(url)
    yield dt, out, url, downloads
    browser.close()
    server.shutdown()
    server.server_close()
    ex.close()


def xy_of(out):
    return normalise(np.load(out / "map.npy"))


def screen(dt, x, y):
    v = dt.js("(function(){var r=document.getElementById('map-clusters').getBoundingClientRect(),"
              "v=window.brainclustExplorer.view;return [r.left, r.top, v.s, v.tx, v.ty]})()")
    return float(v[0] + v[3] + v[2] * x), float(v[1] + v[4] + v[2] * y)


def reset(dt):
    dt.js("document.getElementById('clear-selection').click(); window.brainclustExplorer.setColour('cluster');"
          "var d=document.getElementById('detail'); if (d.open) d.close();"
          "document.querySelector('.modes button[data-mode=pan]').click(); true")
    dt.js("document.getElementById('map-clusters').scrollIntoView({block:'center'}); true")
    before = dt.js("window.brainclustExplorer.stats.draws")
    dt.js("window.brainclustExplorer.resetView(); true")
    dt.wait(f"window.brainclustExplorer.stats.draws > {before}")


def test_density_first_and_only_same_origin_requests(view):
    dt, out, url, _ = view
    assert dt.js("window.brainclustExplorer.stats.kind") == "density"
    assert dt.js("document.querySelectorAll('#map-clusters circle').length") == 0
    assert f"{len(read_rows(out))} of {len(read_rows(out))} images in view, drawn as density" in \
        dt.js("document.getElementById('map-status').textContent")
    assert dt.errors() == []
    urls = [e["params"]["request"]["url"] for e in dt.events if e["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith((url, "data:", "blob:")) for u in urls)


def test_hover_and_click_on_density_show_the_nearest_image(view):
    dt, out, _, _ = view
    reset(dt)
    xy, rows = xy_of(out), read_rows(out)
    i = 11
    x, y = screen(dt, *xy[i])
    dt.mouse("mouseMoved", x, y)
    d = np.hypot(*(xy - xy[i]).T)
    near = set(np.flatnonzero(d <= d[np.argsort(d)[0]] + 1e-6).tolist())
    dt.wait("document.querySelector('#map-preview img').getAttribute('data-i') !== null "
            "&& document.querySelector('#map-preview .cap').textContent.indexOf(' | cluster ') > 0")
    shown = int(dt.js("document.querySelector('#map-preview img').getAttribute('data-i')"))
    assert shown in near
    assert dt.js("document.querySelector('#map-preview .cap').textContent").startswith(rows[shown]["path"])
    dt.wait("document.querySelector('#map-preview img').complete && "
            "document.querySelector('#map-preview img').naturalWidth > 0")
    dt.click(x, y)
    dt.wait("document.getElementById('detail').open && document.querySelectorAll('#detail-table tr').length > 5")
    cells = dict(dt.js("Array.from(document.querySelectorAll('#detail-table tr'))"
                       ".map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])"))
    assert all(cells[k] == v for k, v in rows[shown].items())
    dt.wait("document.getElementById('detail-img').naturalWidth > 0")


def test_zoom_in_turns_density_into_points(view):
    dt, out, _, _ = view
    reset(dt)
    xy = xy_of(out)
    x, y = screen(dt, *xy[0])
    for _ in range(40):
        if dt.js("window.brainclustExplorer.stats.kind") == "points":
            break
        before = dt.js("window.brainclustExplorer.stats.draws")
        dt.mouse("mouseWheel", x, y, deltaX=0, deltaY=-250)
        dt.wait(f"window.brainclustExplorer.stats.draws > {before}")
    assert dt.js("window.brainclustExplorer.stats.kind") == "points"
    n = dt.js("document.querySelectorAll('#map-clusters circle').length")
    assert 0 < n <= 30
    ids = dt.js("Array.from(document.querySelectorAll('#map-clusters circle')).map(c => +c.getAttribute('data-i'))")
    v = dt.js("(function(){var v=window.brainclustExplorer.view;return [v.s, v.tx, v.ty, v.W, v.H]})()")
    x0, y0 = -v[1] / v[0], -v[2] / v[0]
    x1, y1 = x0 + v[3] / v[0], y0 + v[4] / v[0]
    inside = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1))
    assert sorted(ids) == inside.tolist()


def test_box_selection_search_and_csv(view):
    dt, out, _, downloads = view
    reset(dt)
    xy, rows = xy_of(out), read_rows(out)
    a, b = screen(dt, 0.05, 0.05), screen(dt, 0.5, 0.95)
    dt.js("document.querySelector('.modes button[data-mode=box]').click(); true")
    dt.drag(a, b)
    v = dt.js("(function(){var v=window.brainclustExplorer.view;return [v.s, v.tx, v.ty]})()")
    r = dt.js("(function(){var r=document.getElementById('map-clusters').getBoundingClientRect();"
              "return [r.left,r.top]})()")
    (dx0, dy0), (dx1, dy1) = [((p[0] - r[0] - v[1]) / v[0], (p[1] - r[1] - v[2]) / v[0]) for p in (a, b)]
    inside = np.flatnonzero((xy[:, 0] > dx0) & (xy[:, 0] < dx1) & (xy[:, 1] > dy0) & (xy[:, 1] < dy1))
    assert len(inside) > 0
    dt.wait(f"document.getElementById('gallery-count').textContent.indexOf('{len(inside)} image') === 0")
    for f in downloads.iterdir():
        f.unlink()
    dt.js("document.getElementById('download-csv').click(); true")
    deadline = time.monotonic() + 20
    while not (downloads / "selection.csv").exists() and time.monotonic() < deadline:
        dt.drain(0.2)
    got = list(csv.DictReader(io.StringIO((downloads / "selection.csv").read_text(encoding="utf-8"))))
    assert [int(g["row"]) - 1 for g in got] == inside.tolist()
    # search narrows the selection
    dt.js("var s=document.getElementById('search'); s.value='img_1'; s.dispatchEvent(new Event('input')); true")
    both = [i for i in inside.tolist() if "img_1" in rows[i]["path"].lower()]
    dt.wait(f"document.getElementById('gallery-count').textContent.indexOf('{len(both)} image') === 0")
    caps = dt.js("Array.from(document.querySelectorAll('#gallery-grid figcaption')).map(f => f.textContent)")
    assert caps == [rows[i]["path"] for i in both][:48]
    dt.wait("Array.from(document.querySelectorAll('#gallery-grid img')).every(i => i.complete && i.naturalWidth > 0)")


def test_colour_switch_redraws_with_the_column(view):
    dt, _, _, _ = view
    reset(dt)
    before = dt.js("window.brainclustExplorer.stats.draws")
    dt.js("var s=document.getElementById('colour-by'); s.value='age'; s.dispatchEvent(new Event('change')); true")
    dt.wait(f"window.brainclustExplorer.stats.draws > {before}")
    # a draw that the reset started may be the one counted: wait for the one of the new column
    dt.wait("(document.getElementById('density').getAttribute('href') || '').includes('by=age')")
    assert dt.js("document.querySelectorAll('#legend .ramp').length") == 1
    meta = json.loads(dt.js("document.getElementById('map-data').textContent"))
    assert {c["name"]: c["kind"] for c in meta["columns"]}["age"] == "num"
    assert dt.errors() == []
