"""Helpers of the explorer tests: a small finished run with extra columns, and a headless Chromium client.

The run is real in every file the explorer reads (assignments.csv written by
the project's writer, model/cluster.npz from the real Clusterer, metrics from
the real scorer, tiny PNG files) but its embedding is a few Gaussian blobs, so
no CNN runs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from conftest import record_hashes

from brainclust.cluster.methods import Clusterer
from brainclust.cluster.scores import score
from brainclust.io.atomic import atomic_write_csv, atomic_write_json

LEVELS = [f"level_{L}" for L in range(1, 11)]
HOSTILE_DIR = "<script>alert(1)<"                 # a folder: the file inside is 'script>.png'
HOSTILE_FILE = "<img src=x onerror=alert(1)>.png"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--window-size=1280,1000", "--remote-debugging-port=0", "--remote-allow-origins=*"]


def make_run(tmp: Path, n_per: int = 12, k: int = 3, seed: int = 0, hostile: bool = True,
             extra_columns: bool = True, with_map: bool = False) -> Path:
    """A finished hierarchical run of ``k`` blobs x ``n_per`` tiny images (labels, levels, site/flags/age)."""
    rng = np.random.default_rng(seed)
    data, out = tmp / "data", tmp / "out"
    paths, ytrue, X = [], [], []
    centres = rng.normal(size=(k, 8)) * 6
    for c in range(k):
        for i in range(n_per):
            paths.append(f"class{c}/img_{c}{i:03d}.png")
            ytrue.append(f"class{c}")
            X.append(centres[c] + rng.normal(size=8))
    if hostile:
        for j, p in enumerate((f"{HOSTILE_DIR}/script>.png", f"class0/{HOSTILE_FILE}")):
            paths.append(p)
            ytrue.append(p.split("/")[0])
            X.append(centres[j % k] + rng.normal(size=8))
    X = np.asarray(X)
    for idx, p in enumerate(paths):
        f = data / p
        f.parent.mkdir(parents=True, exist_ok=True)
        arr = (np.outer(np.linspace(0, 1, 24), np.linspace(0, 1, 20)) * (60 + 60 * (idx % 3))).astype(np.uint8)
        Image.fromarray(arr).save(f, format="PNG")
    cl = Clusterer(method="hierarchical", n_clusters=k, random_state=seed).fit(X)
    cl.save(out / "model" / "cluster.npz")
    rows = []
    for i, p in enumerate(paths):
        row = {"path": p, "name": Path(p).name, "type": "png", "size": (data / p).stat().st_size, "width": 20,
               "height": 24, "label": ytrue[i], "cluster": int(cl.labels_[i]),
               **{c: int(cl.levels_[i, j]) for j, c in enumerate(LEVELS)}}
        if extra_columns:
            row.update(site=["north", "south"][i % 2], flags="dark" if i % 5 == 0 else "", age=20 + (i * 7) % 50)
        rows.append(row)
    atomic_write_csv(out / "assignments.csv", list(rows[0]), rows)
    atomic_write_json(out / "metrics.json", score(X, cl.labels_, ytrue))
    atomic_write_json(out / "manifest.json", {
        "kind": "run", "input": str(data.resolve()), "versions": {"brainclust": "test"},
        "settings": {"method": "hierarchical", "k": k, "seed": seed, "labels_from_folders": True, "pca": 8,
                     "workers": None, "ray_address": "", "ssl": [], "progress": None},
        "backbone": {"name": "efficientnet_lite0", "dim": 1280, "input_size": 224},
        "pca": {"n_components": 8}, "clustering": {"method": "hierarchical", "k": k},
        "n_files_scanned": len(paths), "n_images": len(paths), "skipped": [], "timings_s": {"scan": 0.01}})
    if with_map:
        from brainclust.report.mapcoords import compute_map, save_map

        save_map(out, compute_map(X, seed))
    record_hashes(out, data)
    return out


def read_rows(out: Path) -> list[dict]:
    import csv

    with open(out / "assignments.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class DevTools:
    """A minimal Chrome DevTools Protocol client: commands, events, JS evaluation, real mouse input."""

    def __init__(self, ws_url: str):
        import websocket

        self._timeout = websocket.WebSocketTimeoutException
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        self.ws.settimeout(60)
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        if "method" not in msg:
            return
        self.events.append(msg)
        if msg["method"] == "Page.javascriptDialogOpening":
            self.ws.send(json.dumps({"id": 10**6 + len(self.events), "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}}))

    def wait_for(self, method: str, timeout: float = 30) -> None:
        """Until an event ``method`` has been seen."""
        deadline = time.monotonic() + timeout
        while not any(e["method"] == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self._event(json.loads(self.ws.recv()))

    def close(self) -> None:
        self.ws.close()

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        self.ws.settimeout(0.1)
        while time.monotonic() < end:
            try:
                self._event(json.loads(self.ws.recv()))
            except self._timeout:
                pass

    def js(self, expression: str):
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error in {expression!r}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expression: str, timeout: float = 30.0):
        end = time.monotonic() + timeout
        while True:
            v = self.js(expression)
            if v:
                return v
            if time.monotonic() > end:
                raise TimeoutError(f"not true within {timeout} s: {expression}")
            self.drain(0.05)

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && !!window.brainclustExplorer "
                  "&& window.brainclustExplorer.stats.first !== null")

    def mouse(self, kind: str, x: float, y: float, button: str = "none", **extra) -> None:
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button,
                  buttons=1 if button == "left" and kind != "mouseReleased" else 0, clickCount=extra.pop("clicks", 0),
                  **extra)

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, "left", clicks=1)
        self.mouse("mouseReleased", x, y, "left", clicks=1)

    def drag(self, a, b, steps: int = 8, modifiers: int = 0) -> None:
        self.mouse("mouseMoved", *a, modifiers=modifiers)
        self.mouse("mousePressed", *a, "left", clicks=1, modifiers=modifiers)
        for s in range(1, steps + 1):
            t = s / steps
            self.mouse("mouseMoved", a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), "left", modifiers=modifiers)
        self.mouse("mouseReleased", *b, "left", clicks=1, modifiers=modifiers)

    def centre_of(self, selector: str):
        """Scroll the element into the middle of the window (waiting for any smooth scroll to end); its centre."""
        expr = (f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                "e.scrollIntoView({block:'center'}); var r=e.getBoundingClientRect();"
                "return [r.left + r.width/2, r.top + r.height/2]})()")
        last = self.js(expr)
        for _ in range(50):
            self.drain(0.1)
            now = self.js(expr)
            if now == last:
                return now
            last = now
        return last

    def errors(self) -> list[dict]:
        return [e for e in self.events if e["method"] == "Runtime.exceptionThrown"
                or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
                or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self.ws.close()


class Chromium:
    """Headless Chromium on about:blank, with one page's DevTools client."""

    def __init__(self, profile: Path):
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start (exit code {self.proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as fh:
            page = [t for t in json.load(fh) if t.get("type") == "page"][0]
        self.dt = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.dt.send(f"{domain}.enable")

    def close(self) -> None:
        try:
            if hasattr(self, "dt"):
                self.dt.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
