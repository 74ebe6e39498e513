"""report.html's explorer in headless Chromium, driven with real mouse and keyboard events (DevTools).

On a small real run (3 blobs x 60 tiny PNGs, hostile file names, extra
columns): hover shows the image under the pointer, a click opens it with its
full path and every column of its row (checked against assignments.csv), a
box drawn with the mouse selects exactly the dots inside it (checked against
the dots' positions on screen) and its file list downloads as CSV, search,
the colour switch (cluster, label, the tree levels, a numeric column), paging
through a cluster's gallery, zoom, and a sampled file. Skipped without
Chromium or websocket-client.
"""

from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pytest
from explorer_fixtures import CHROMIUM, HOSTILE_FILE, LEVELS, Chromium, make_run, read_rows

from brainclust.report.build import build_report

pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

CIRCLES = "#map-clusters circle"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = make_run(tmp_path_factory.mktemp("explorer"), n_per=60)
    report = build_report(out, write_figures=False).path
    downloads = tmp_path_factory.mktemp("downloads")
    browser = Chromium(tmp_path_factory.mktemp("profile"))
    dt = browser.dt
    dt.send("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    dt.open(report.resolve().as_uri())
    yield dt, out, report, downloads
    browser.close()


def data(dt):
    return dt.js("JSON.parse(document.getElementById('map-data').textContent)")


def reset(dt):
    dt.js("document.getElementById('clear-selection').click(); window.brainclustExplorer.resetView(); "
          "window.brainclustExplorer.setColour('cluster'); true")
    dt.js("(function(){var d=document.getElementById('detail'); if (d.open) d.close(); return true})()")
    dt.js("document.querySelector('.modes button[data-mode=pan]').click(); true")


def gallery_total(dt) -> int:
    text = dt.js("document.getElementById('gallery-count').textContent")
    return int(text.split()[0].replace(",", ""))


def dot_under(dt, x, y):
    """The circle the browser finds at (x, y), as its data-i (None if none)."""
    return dt.js(f"(function(){{var e=document.elementFromPoint({x},{y});"
                 "return e && e.tagName.toLowerCase()==='circle' ? parseInt(e.getAttribute('data-i'),10) : null})()")


def test_loads_without_errors_and_draws_every_image(page):
    dt, out, _, _ = page
    assert dt.errors() == []
    n = len(read_rows(out))
    assert dt.js(f"document.querySelectorAll('{CIRCLES}').length") == n
    assert data(dt)["sampled"] is False


def test_hover_shows_the_image_under_the_pointer(page):
    dt, _, _, _ = page
    reset(dt)
    d = data(dt)
    for j in (0, 17, 101):
        x, y = dt.centre_of(f"{CIRCLES}[data-i=\"{j}\"]")
        dt.mouse("mouseMoved", x, y)
        i = dot_under(dt, x, y)
        assert i is not None
        cap = dt.js("document.querySelector('#map-preview .cap').textContent")
        assert cap.startswith(d["names"][i] + " | cluster ")
        assert dt.js("document.querySelector('#map-preview img').src") == d["thumbs"][i]


def test_click_opens_the_image_with_its_path_and_every_column(page):
    dt, out, _, _ = page
    reset(dt)
    rows = read_rows(out)
    d = data(dt)
    x, y = dt.centre_of(f"{CIRCLES}[data-i=\"5\"]")
    i = dot_under(dt, x, y)
    dt.click(x, y)
    dt.wait("document.getElementById('detail').open && document.querySelectorAll('#detail-table tr').length > 3")
    row = rows[d["rows"][i]]
    assert dt.js("document.getElementById('detail-path').textContent") == row["path"]
    cells = dict(dt.js("Array.from(document.querySelectorAll('#detail-table tr'))"
                       ".map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])"))
    assert cells["row in assignments.csv"] == str(d["rows"][i] + 1)
    for name, value in row.items():
        assert cells[name] == value, name
    big = dt.js("document.getElementById('detail-img')")
    assert big is not None
    assert dt.js("document.getElementById('detail-img').naturalWidth") >= 64
    dt.js("document.getElementById('detail-close').click(); true")
    assert not dt.js("document.getElementById('detail').open")


def test_box_selection_counts_the_dots_inside_and_downloads_them(page):
    dt, out, _, downloads = page
    reset(dt)
    box = dt.js("(function(){var r=document.getElementById('map-clusters').getBoundingClientRect();"
                "document.getElementById('map-clusters').scrollIntoView({block:'center'});"
                "r=document.getElementById('map-clusters').getBoundingClientRect();"
                "return [r.left + r.width*0.1, r.top + r.height*0.1, r.left + r.width*0.55, r.top + r.height*0.9]})()")
    inside = dt.js(f"Array.from(document.querySelectorAll('{CIRCLES}')).filter(c => {{"
                   "var r = c.getBoundingClientRect(), x = r.left + r.width/2, y = r.top + r.height/2;"
                   f"return x >= {box[0]} && x <= {box[2]} && y >= {box[1]} && y <= {box[3]}}})"
                   ".map(c => parseInt(c.getAttribute('data-i'), 10))")
    assert 0 < len(inside) < dt.js(f"document.querySelectorAll('{CIRCLES}').length")
    dt.js("document.querySelector('.modes button[data-mode=box]').click(); true")
    dt.drag((box[0], box[1]), (box[2], box[3]))
    dt.wait("!document.getElementById('gallery').hidden")
    assert gallery_total(dt) == len(inside)
    assert dt.js(f"document.querySelectorAll('{CIRCLES}:not(.dim)').length") == len(inside)
    assert sorted(dt.js("Array.from(document.querySelectorAll('#gallery-grid figure'))"
                        ".map(f => parseInt(f.getAttribute('data-i'), 10))")) == sorted(inside)[:48]
    # the file list, made in the page (blob: URL), downloaded
    for f in downloads.iterdir():
        f.unlink()
    dt.js("document.getElementById('download-csv').click(); true")
    deadline = time.monotonic() + 20
    while not any(f.suffix == ".csv" for f in downloads.iterdir()) and time.monotonic() < deadline:
        dt.drain(0.2)
    got = list(csv.DictReader(io.StringIO((downloads / "selection.csv").read_text(encoding="utf-8"))))
    d = data(dt)
    assert sorted(r["path"] for r in got) == sorted(d["names"][i] for i in inside)
    rows = read_rows(out)
    for r in got:
        assert {k: r[k] for k in rows[0]} == rows[int(r["row"]) - 1]


def test_lasso_selects_the_dots_inside_the_drawn_shape(page):
    from matplotlib.path import Path as Polygon

    dt, _, _, _ = page
    reset(dt)
    r = dt.js("(function(){var e=document.getElementById('map-clusters'); e.scrollIntoView({block:'center'});"
              "var r=e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]})()")
    corners = [(0.15, 0.2), (0.7, 0.15), (0.6, 0.85), (0.2, 0.7)]
    path = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
        path += [(r[0] + r[2] * (ax + t / 10 * (bx - ax)), r[1] + r[3] * (ay + t / 10 * (by - ay))) for t in range(10)]
    centres = dt.js(f"Array.from(document.querySelectorAll('{CIRCLES}')).map(c => {{"
                    "var b = c.getBoundingClientRect(); return [parseInt(c.getAttribute('data-i'), 10),"
                    "b.left + b.width/2, b.top + b.height/2]})")
    poly = Polygon(path)
    inside = sorted(i for i, x, y in centres if poly.contains_point((x, y)))
    assert 0 < len(inside) < len(centres)
    dt.js("document.querySelector('.modes button[data-mode=lasso]').click(); true")
    dt.mouse("mouseMoved", *path[0])
    dt.mouse("mousePressed", *path[0], "left", clicks=1)
    for p in path[1:]:
        dt.mouse("mouseMoved", *p, "left")
    dt.mouse("mouseReleased", *path[-1], "left", clicks=1)
    dt.wait("!document.getElementById('gallery').hidden")
    assert gallery_total(dt) == len(inside)
    assert sorted(dt.js(f"Array.from(document.querySelectorAll('{CIRCLES}:not(.dim)'))"
                        ".map(c => parseInt(c.getAttribute('data-i'), 10))")) == inside


def test_search_lists_the_matching_names(page):
    dt, out, _, _ = page
    reset(dt)
    names = [r["path"] for r in read_rows(out)]
    x, y = dt.centre_of("#search")
    dt.click(x, y)
    dt.send("Input.insertText", text="IMG_1")
    expected = [p for p in names if "img_1" in p.lower()]
    dt.wait(f"!document.getElementById('gallery').hidden && document.getElementById('gallery-count').textContent"
            f".indexOf('{len(expected)} image') === 0")
    caps = dt.js("Array.from(document.querySelectorAll('#gallery-grid figcaption')).map(f => f.textContent)")
    assert caps and all("img_1" in c.lower() for c in caps)
    assert dt.js(f"document.querySelectorAll('{CIRCLES}:not(.dim)').length") == len(expected)


def test_hostile_names_stay_text_in_the_gallery(page):
    dt, _, _, _ = page
    reset(dt)
    dt.js("var s=document.getElementById('search'); s.value='onerror'; s.dispatchEvent(new Event('input')); true")
    dt.wait("document.querySelectorAll('#gallery-grid figcaption').length === 1")
    assert dt.js("document.querySelector('#gallery-grid figcaption').textContent") == f"class0/{HOSTILE_FILE}"
    assert dt.js("document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0
    assert not [e for e in dt.events if e["method"] == "Page.javascriptDialogOpening"]




def test_colour_switch_label_levels_and_numeric(page):
    dt, out, _, _ = page
    reset(dt)
    rows = read_rows(out)
    d = data(dt)

    def groups(column):
        fills = dt.js(f"Array.from(document.querySelectorAll('{CIRCLES}'))"
                      ".map(c => [parseInt(c.getAttribute('data-i'),10), c.getAttribute('fill')])")
        by = {}
        for i, f in fills:
            by.setdefault(rows[d["rows"][i]][column], set()).add(f)
        return by

    def choose(value):
        dt.js(f"var s=document.getElementById('colour-by'); s.value={json.dumps(value)}; "
              "s.dispatchEvent(new Event('change')); true")

    choose("label")
    by = groups("label")
    assert all(len(f) == 1 for f in by.values())                       # one colour per label
    assert len({next(iter(f)) for f in by.values()}) == len(by)        # distinct labels, distinct colours
    assert dt.js("document.querySelectorAll('#legend .legend-item').length") == len(by)
    choose("@level")
    assert dt.js("!document.getElementById('level-switch').hidden")
    level = dt.js("window.brainclustExplorer.state.colour")
    assert level in LEVELS
    n_groups = len({r[level] for r in rows})
    assert len({f for fs in groups(level).values() for f in fs}) == n_groups
    assert all(len(f) == 1 for f in groups(level).values())
    dt.js("document.getElementById('level-up').click(); true")
    nxt = LEVELS[LEVELS.index(level) + 1]
    assert dt.js("window.brainclustExplorer.state.colour") == nxt
    assert len({f for fs in groups(nxt).values() for f in fs}) == len({r[nxt] for r in rows})
    choose("age")
    assert dt.js("document.querySelectorAll('#legend .ramp').length") == 1
    ages = {int(r["age"]) for r in rows}
    by = groups("age")
    assert by[str(min(ages))] == {"#440154"} and by[str(max(ages))] == {"#fde725"}


def test_cluster_gallery_pages_through_every_member(page):
    dt, out, _, _ = page
    reset(dt)
    rows = read_rows(out)
    d = data(dt)
    sizes = {}
    for r in rows:
        sizes[r["cluster"]] = sizes.get(r["cluster"], 0) + 1
    cid = max(sizes, key=sizes.get)
    assert sizes[cid] > 48                                                # more than one page
    x, y = dt.centre_of(f"button[data-browse-col=cluster][data-browse-value=\"{cid}\"]")
    dt.click(x, y)
    dt.wait("!document.getElementById('gallery').hidden")
    assert gallery_total(dt) == sizes[cid]
    seen = []
    pages = -(-sizes[cid] // 48)
    for p in range(pages):
        dt.wait(f"document.getElementById('page-info').textContent === 'page {p + 1} of {pages}'")
        seen += dt.js("Array.from(document.querySelectorAll('#gallery-grid figure'))"
                      ".map(f => parseInt(f.getAttribute('data-i'), 10))")
        if p < pages - 1:
            dt.js("document.getElementById('page-next').click(); true")
    assert dt.js("document.getElementById('page-next').disabled")
    assert sorted(d["rows"][i] for i in seen) == [j for j, r in enumerate(rows) if r["cluster"] == cid]


def test_wheel_zooms_around_the_pointer_and_dots_keep_their_size(page):
    dt, _, _, _ = page
    reset(dt)
    x, y = dt.centre_of("#map-clusters")
    s0 = dt.js("window.brainclustExplorer.view.s")
    r0 = dt.js(f"document.querySelector('{CIRCLES}').getBoundingClientRect().width")
    for _ in range(3):
        dt.mouse("mouseWheel", x, y, deltaX=0, deltaY=-300)
    dt.drain(0.3)
    s1 = dt.js("window.brainclustExplorer.view.s")
    assert s1 > 2 * s0
    r1 = dt.js(f"document.querySelector('{CIRCLES}').getBoundingClientRect().width")
    assert r1 == pytest.approx(r0, abs=1.0)


def test_no_request_leaves_the_file(page):
    dt, _, report, _ = page
    urls = [e["params"]["request"]["url"] for e in dt.events if e["method"] == "Network.requestWillBeSent"]
    assert [u for u in urls if not u.startswith(("data:", "blob:")) and u != report.resolve().as_uri()] == []


def test_many_dots_are_painted_on_a_canvas_with_the_same_interactions(page, tmp_path):
    """Above the DOM limit (1,200 dots; lowered to 20 here through the page's data) the dots are painted on a
    canvas: hover and click find the nearest dot, a box selects what is inside, zoom repaints."""
    dt, out, report, _ = page
    rows = read_rows(out)
    html = report.read_text(encoding="utf-8")
    assert html.count('"mode": "file"') == 1
    many = tmp_path / "report_canvas.html"
    many.write_text(html.replace('"mode": "file"', '"dom_limit": 20, "mode": "file"'), encoding="utf-8")
    dt.open(many.resolve().as_uri())
    try:
        assert dt.js("window.brainclustExplorer.drawnOnCanvas()")
        assert dt.js(f"document.querySelectorAll('{CIRCLES}').length") == 0
        d = data(dt)
        dt.centre_of("#map-clusters")

        def screen(j):
            v = dt.js("(function(){var r=document.getElementById('map-clusters').getBoundingClientRect(),"
                      "v=window.brainclustExplorer.view;return [r.left, r.top, v.s, v.tx, v.ty]})()")
            return v[0] + v[3] + v[2] * d["x"][j], v[1] + v[4] + v[2] * d["y"][j]

        xs, ys = np.array(d["x"]), np.array(d["y"])
        j = int(np.argmax(np.min(np.hypot(xs[:, None] - xs[None], ys[:, None] - ys[None]) + np.eye(len(xs)), 1)))
        x, y = screen(j)                                       # the most isolated dot: no neighbour within 6 px
        dt.mouse("mouseMoved", x, y)
        assert dt.js("document.querySelector('#map-preview .cap').textContent").startswith(d["names"][j] + " | ")
        dt.click(x, y)
        dt.wait("document.getElementById('detail').open")
        assert dt.js("document.getElementById('detail-path').textContent") == rows[d["rows"][j]]["path"]
        dt.js("document.getElementById('detail-close').click(); true")
        dt.js("document.querySelector('.modes button[data-mode=box]').click(); true")
        r = dt.js("(function(){var r=document.getElementById('map-clusters').getBoundingClientRect();"
                  "return [r.left, r.top, r.width, r.height]})()")
        a, b = (r[0] + 0.2 * r[2], r[1] + 0.1 * r[3]), (r[0] + 0.7 * r[2], r[1] + 0.9 * r[3])
        v = dt.js("(function(){var v=window.brainclustExplorer.view;return [v.s, v.tx, v.ty]})()")
        (u0, w0), (u1, w1) = [((p[0] - r[0] - v[1]) / v[0], (p[1] - r[1] - v[2]) / v[0]) for p in (a, b)]
        inside = int(((xs > u0) & (xs < u1) & (ys > w0) & (ys < w1)).sum())
        assert inside > 0
        dt.drag(a, b)
        dt.wait(f"document.getElementById('gallery-count').textContent.indexOf('{inside} image') === 0")
        before = dt.js("window.brainclustExplorer.view.s")
        dt.mouse("mouseWheel", *screen(j), deltaX=0, deltaY=-400)
        dt.drain(0.3)
        assert dt.js("window.brainclustExplorer.view.s") > before
        assert dt.js("window.brainclustExplorer.drawnOnCanvas()") and dt.errors() == []
    finally:
        dt.open(report.resolve().as_uri())


def test_a_sampled_file_says_so(tmp_path):
    out = make_run(tmp_path, n_per=60)
    n = len(read_rows(out))
    info = build_report(out, write_figures=False, size_budget_mb=0.3)
    assert info.size_bytes <= 0.3e6
    browser = Chromium(tmp_path / "profile")
    try:
        dt = browser.dt
        dt.open(info.path.resolve().as_uri())
        shown = dt.js(f"document.querySelectorAll('{CIRCLES}').length")
        assert 3 <= shown < n
        assert f"This file holds {shown} of the {n} images" in dt.js("document.getElementById('map').innerText")
        assert dt.errors() == []
    finally:
        browser.close()
