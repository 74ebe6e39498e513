"""The explorer at scale: ``brainclust view`` on 10^5 and 10^6 images, ``report.html`` at 6,000.

Not a test: it prints figures for docs/report.md and docs/ARCHITECTURE.md.

``view`` part: a synthetic run folder of ``--n`` images (assignments.csv with
the usual columns, 10 tree levels and two metadata columns, ``map.npy`` drawn
from a mixture of 2-D Gaussians, manifest and metrics; ``--files`` tiny real
PNG files, the other rows' files are absent and show as placeholders) is
served by ``python -m brainclust.report.server`` in a subprocess and opened
in headless Chromium (DevTools protocol). Measured: server start-up (reading
the run), time to the first map paint in the page (``performance.now()`` when
the first density tile or point set is drawn, from navigation start), the
median request time of the view and tile answers during 8 wheel-zoom steps,
the server's peak RSS (``VmHWM``) and the page's JS heap.

``report`` part: a fake run of ``--report-n`` images (the data folder links
to the images of ``--data``, repeated; random 50-d blobs clustered by the
real Clusterer) is built into report.html: size, build time, time to first
paint and JS heap in Chromium.

Run::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_view.py --n 100000 1000000 --report-n 6000 \\
        --data ../shared/data/brain_tumor_4class_dev [--screenshots docs/img]
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--window-size=1280,900", "--remote-debugging-port=0", "--remote-allow-origins=*",
         "--enable-precise-memory-info"]


# -- a synthetic run folder ------------------------------------------------------------
def make_run(n: int, work: Path, n_files: int = 2000, k: int = 12, seed: int = 0) -> Path:
    """Write a synthetic finished run of ``n`` images under ``work``; return the run folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    data, out = work / "data", work / "run"
    out.mkdir(parents=True, exist_ok=True)
    centres = rng.uniform(-30, 30, size=(k, 2))
    widths = rng.uniform(1.5, 5.0, size=k)
    cl = rng.choice(k, size=n, p=rng.dirichlet(np.ones(k) * 2))
    xy = centres[cl] + rng.normal(size=(n, 2)) * widths[cl, None]
    noise = rng.random(n) < 0.01
    xy[noise] = rng.uniform(-40, 40, size=(int(noise.sum()), 2))
    np.save(out / "map.npy", xy.astype(np.float32))
    sites = np.array(["A", "B", "C", "D", "E"])[rng.integers(0, 5, n)]
    header = ["path", "name", "type", "size", "width", "height", "label", "cluster",
              *[f"level_{L}" for L in range(1, 11)], "site", "age"]
    with open(out / "assignments.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            c = int(cl[i])
            p = f"site{sites[i]}/sub-{i // 200:05d}/slice_{i:07d}.png"
            w.writerow([p, f"slice_{i:07d}.png", "png", 300, 32, 32, f"class{c % 4}", c,
                        *[min(c * L // k, L - 1) for L in range(1, 11)], sites[i], 20 + (i * 7919) % 60])
    for i in range(min(n_files, n)):
        p = data / f"site{sites[i]}/sub-{i // 200:05d}/slice_{i:07d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        g = np.outer(np.linspace(0, 1, 32), np.linspace(0, 1, 32)) * (40 + 200 * (cl[i] / k))
        Image.fromarray(g.astype(np.uint8)).save(p)
    manifest = {"kind": "run", "input": str(data.resolve()), "n_images": n,
                "settings": {"method": "hierarchical", "k": k, "seed": seed, "labels_from_folders": True},
                "clustering": {"method": "hierarchical", "k": k}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "metrics.json").write_text(json.dumps({"silhouette": 0.5, "nmi": 0.3}))
    return out


# -- Chromium through the DevTools protocol ----------------------------------------------
class Browser:
    def __init__(self):
        import websocket

        self.profile = tempfile.mkdtemp(prefix="bench-chromium-")
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as fh:
            page = [t for t in json.load(fh) if t.get("type") == "page"][0]
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=120, suppress_origin=True)
        self.next_id = 0
        for d in ("Page", "Runtime"):
            self.send(f"{d}.enable")

    def send(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr):
        res = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(res["exceptionDetails"])
        return res["result"].get("value")

    def wait(self, expr, timeout=120.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(expr)

    def open(self, url):
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'")
        return self.wait("window.brainclustExplorer && window.brainclustExplorer.stats.first")

    def shot(self, path: Path, element: str = "explorer"):
        r = self.js(f"(function(){{var r=document.getElementById('{element}').getBoundingClientRect();"
                    "return [r.left+scrollX, r.top+scrollY, r.width, r.height]})()")
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": r[0], "y": r[1], "width": r[2], "height": r[3], "scale": 1})["data"]
        path.write_bytes(base64.b64decode(data))

    def wheel(self, x, y, dy):
        self.send("Input.dispatchMouseEvent", type="mouseWheel", x=x, y=y, deltaX=0, deltaY=dy)

    def close(self):
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


def heap_mb(b: Browser) -> float:
    return b.js("performance.memory ? performance.memory.usedJSHeapSize / 1e6 : -1")


def chromium_rss_mb(b: Browser) -> float:
    """Sum of the resident memory of this Chromium's processes (shared pages counted in each: an upper bound)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b.profile.encode() in cmd:
                total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
        except (OSError, AttributeError):
            continue
    return total / 1024


def vm_hwm_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024


# -- view -------------------------------------------------------------------------------
def bench_view(n: int, work: Path, browser: Browser, shots: Path | None) -> dict:
    t0 = time.perf_counter()
    run = make_run(n, work / f"v{n}")
    t_make = time.perf_counter() - t0
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "brainclust.report.server", str(run), "--port", "0",
                             "--cache-dir", str(work / "cache")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()
        t_start = time.perf_counter() - t0
        url = re.search(r"(http://\S+/)", line).group(1)
        t0 = time.perf_counter()
        first_ms = browser.open(url)
        t_open = time.perf_counter() - t0
        kind = browser.js("window.brainclustExplorer.stats.kind")
        browser.js("performance.clearResourceTimings()")
        cx, cy = browser.js("(function(){var r=document.getElementById('map-clusters').getBoundingClientRect();"
                            "return [r.left + r.width*0.45, r.top + r.height*0.5]})()")
        kinds = []
        for _ in range(8):
            before = browser.js("window.brainclustExplorer.stats.draws")
            browser.wheel(cx, cy, -400)
            browser.wait(f"window.brainclustExplorer.stats.draws > {before}", 60)
            kinds.append(browser.js("window.brainclustExplorer.stats.kind"))
        timings = browser.js("performance.getEntriesByType('resource').filter(e => e.name.indexOf('/api/') >= 0)"
                             ".map(e => [e.name.split('?')[0].split('/api/')[1], e.duration])")
        if shots:
            browser.shot(shots / f"explorer-view-{n // 1000}k-zoomed.png")
            browser.js("window.brainclustExplorer.resetView()")
            browser.wait("window.brainclustExplorer.stats.kind === 'density'", 60)
            time.sleep(0.5)
            browser.shot(shots / f"explorer-view-{n // 1000}k.png")
        out = {"n": n, "make_run_s": t_make, "server_start_s": t_start, "page_open_s": t_open,
               "first_paint_ms": first_ms, "first_kind": kind, "zoom_kinds": kinds,
               "median_view_ms": float(np.median([d for k, d in timings if k == "view"] or [np.nan])),
               "median_tile_ms": float(np.median([d for k, d in timings if k == "tile"] or [np.nan])),
               "server_peak_rss_mb": vm_hwm_mb(proc.pid), "page_js_heap_mb": heap_mb(browser),
               "chromium_rss_mb": chromium_rss_mb(browser)}
    finally:
        proc.send_signal(2)  # SIGINT: the server's Ctrl-C path
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


# -- report -----------------------------------------------------------------------------
def bench_report(n: int, data_dir: Path, work: Path, browser: Browser, shots: Path | None) -> dict:
    from brainclust.cluster.methods import Clusterer
    from brainclust.cluster.scores import score
    from brainclust.io.atomic import atomic_write_csv, atomic_write_json
    from brainclust.report.build import build_report

    src = sorted(p for p in data_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    base = work / f"r{n}"
    data, out = base / "data", base / "out"
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(n):
        s = src[i % len(src)]
        rel = f"{s.parent.name}/copy{i // len(src)}_{s.name}"
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (data / rel).exists():
            os.symlink(s.resolve(), data / rel)
        paths.append(rel)
        labels.append(s.parent.name)
    names = sorted(set(labels))
    centres = rng.normal(size=(len(names), 50)) * 2.0
    X = np.stack([centres[names.index(lab)] + rng.normal(size=50) * 1.5 for lab in labels])
    cl = Clusterer(method="hierarchical", n_clusters=len(names), random_state=0).fit(X)
    cl.save(out / "model" / "cluster.npz")
    rows = [{"path": p, "name": Path(p).name, "type": "jpeg", "size": 1, "width": 224, "height": 224,
             "label": labels[i], "cluster": int(cl.labels_[i]),
             **{f"level_{L}": int(cl.levels_[i, L - 1]) for L in range(1, 11)}} for i, p in enumerate(paths)]
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    atomic_write_json(out / "metrics.json", score(X, cl.labels_, labels))
    atomic_write_json(out / "manifest.json", {"kind": "run", "input": str(data.resolve()),
                                              "settings": {"method": "hierarchical", "k": len(names), "seed": 0,
                                                           "labels_from_folders": True},
                                              "clustering": {"method": "hierarchical", "k": len(names)}})
    t0 = time.perf_counter()
    info = build_report(out, write_figures=False)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_ms = browser.open(info.path.resolve().as_uri())
    t_open = time.perf_counter() - t0
    res = {"n": n, "size_mb": info.size_bytes / 1e6, "build_s": t_build, "stage_s": info.timings_s,
           "images_in_file": info.n_map_points,
           "thumb_px": json.loads((out / "manifest.json").read_text())["report"]["thumbnail_px"],
           "first_paint_ms": first_ms, "page_open_s": t_open, "page_js_heap_mb": heap_mb(browser),
           "chromium_rss_mb": chromium_rss_mb(browser)}
    if shots:
        browser.shot(shots / f"explorer-report-{n}.png", "map")
        browser.js("document.querySelector('#legend .legend-item').click(); true")
        browser.wait("document.querySelectorAll('#gallery-grid img').length > 0")
        time.sleep(0.5)
        browser.shot(shots / f"explorer-report-{n}-gallery.png", "map")
    return res


def shrink_png(path: Path, width: int = 900) -> None:
    """A screenshot made smaller for the docs: at most ``width`` px wide, 256 colours (no dithering; the
    legend's colours move by at most a few levels)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[100_000, 1_000_000], help="view: run sizes")
    ap.add_argument("--report-n", type=int, default=6000, help="report: run size (0 = skip)")
    ap.add_argument("--data", default="../shared/data/brain_tumor_4class_dev", help="report: real images to link to")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--screenshots", default=None, help="folder for PNG screenshots")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_view_"))
    shots = Path(args.screenshots) if args.screenshots else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    browser = Browser()
    results = {"view": [], "report": None}
    try:
        browser.send("Page.navigate", url="about:blank")
        time.sleep(1.0)
        print(json.dumps({"blank_chromium_rss_mb": chromium_rss_mb(browser)}), flush=True)
        for n in args.n:
            r = bench_view(n, work, browser, shots if n == max(args.n) else None)
            results["view"].append(r)
            print(json.dumps(r), flush=True)
        if args.report_n:
            results["report"] = bench_report(args.report_n, Path(args.data), work, browser, shots)
            print(json.dumps(results["report"]), flush=True)
    finally:
        browser.close()
        for png in (shots.glob("explorer-*.png") if shots else ()):
            shrink_png(png)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
