"""Open report.html in headless Chromium through the DevTools protocol.

Checks what only a browser can: the page loads with no console error and no
request other than the file itself and ``data:`` URIs, every section is
there, hostile file names are shown as text (never as elements, no dialog
opens), hovering a map point shows that image's name, and a screenshot can be
taken. Skipped when Debian's ``chromium`` (``.ci/run`` installs it) or
``websocket-client`` (dev extra) is missing.
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
import pytest
from explorer_fixtures import DevTools
from test_report import IMG_NAME, SCRIPT_PATH, fake_run

from brainclust.report.build import build_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
         "--window-size=1280,900", "--remote-debugging-port=0", "--remote-allow-origins=*"]
SECTIONS = ["summary", "scores", "map", "dendrogram", "montages", "silhouette", "confusion", "purity"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Start Chromium on about:blank; yield the DevTools websocket URL of its page."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as fh:
            pages = [t for t in json.load(fh) if t.get("type") == "page"]
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def loaded(browser, tmp_path_factory):
    """A labelled fake run with hostile file names, its report opened in the browser."""
    out = fake_run(tmp_path_factory.mktemp("run"), extra_paths=(SCRIPT_PATH, f"class1/{IMG_NAME}"))
    report = build_report(out).path
    dt = DevTools(browser)
    for domain in ("Page", "Runtime", "Log", "Network"):
        dt.send(f"{domain}.enable")
    dt.send("Page.navigate", url=report.resolve().as_uri())
    dt.wait_for("Page.loadEventFired")
    dt.drain(0.5)
    yield dt, report
    dt.close()


def test_no_console_errors_no_dialog(loaded):
    dt, _ = loaded
    errors = [e for e in dt.events if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    assert not [e for e in dt.events if e["method"] == "Page.javascriptDialogOpening"]


def test_no_network_requests(loaded):
    dt, report = loaded
    urls = [e["params"]["request"]["url"] for e in dt.events if e["method"] == "Network.requestWillBeSent"]
    assert report.resolve().as_uri() in urls
    outside = [u for u in urls if not u.startswith("data:") and u != report.resolve().as_uri()]
    assert outside == []


def test_sections_present(loaded):
    dt, _ = loaded
    found = dt.js("Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
    assert found == SECTIONS
    assert dt.js("document.querySelectorAll('div.montage').length") == 3
    assert dt.js("document.querySelectorAll('#map-clusters circle').length") == 32
    assert dt.js("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")


def test_hostile_names_render_as_text(loaded):
    dt, _ = loaded
    text = dt.js("document.body.innerText")
    assert SCRIPT_PATH in text and IMG_NAME in text
    assert dt.js("document.scripts.length") == 2
    assert dt.js("document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0


def test_hover_shows_thumbnail_and_name(loaded):
    dt, _ = loaded
    names = dt.js("JSON.parse(document.getElementById('map-data').textContent).names")
    i = names.index(SCRIPT_PATH)
    dt.js(f"document.querySelector('#map-clusters circle[data-i=\"{i}\"]')"
          ".dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))")
    caption = dt.js("document.querySelector('#map-preview .cap').textContent")
    assert caption.startswith(SCRIPT_PATH + " | cluster ")
    assert dt.js("document.querySelector('#map-preview img').src").startswith("data:image/jpeg;base64,")
    assert dt.js("document.querySelector('#map-preview').querySelectorAll('script, img').length") == 1


def test_screenshot(loaded, tmp_path):
    from io import BytesIO

    from PIL import Image

    dt, _ = loaded
    shot = base64.b64decode(dt.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
    path = Path(os.environ.get("BRAINCLUST_SCREENSHOT", tmp_path / "report.png"))
    path.write_bytes(shot)
    with Image.open(BytesIO(shot)) as im:
        assert im.width >= 1000 and im.height > 2000           # the whole page, not just the viewport
        assert len(np.unique(np.asarray(im.convert("L").resize((64, 64))))) > 20   # not a blank page
