"""Rendered non-MRI pictures for ``checks_planted.py --planting render``.

Pictures none of the other plantings use, made offline on this machine: matplotlib charts (line, bar,
scatter, a histogram of an MRI slice's grey levels, a heat map and an MRI slice with colour bars, pie,
box plot, contours, a dark-background plot, a polar plot, a grid of plots around an MRI slice), text
set in several fonts (one light on dark), diagrams (a flow chart, a tree, a Venn diagram) and headless
chromium screenshots of HTML pages (two long Markdown documents, a table, a form, an article, an article
with an MRI slice, a dark viewer around an MRI slice, a terminal, a dashboard, a code listing). Every one
is ``not_mri``: a figure or page that holds an MRI slice is not a slice.

Every page's text is fixed here (:data:`GUIDE_MD`, :data:`NOTES_MD`, :data:`CODE_LISTING`) or drawn by
the seed from :data:`WORDS`: no page reads a file of the repository, so a seed gives the same pictures
whatever the repository's docs and code say. (Until 2026-12-07 the two documents were the repository's
``README.md`` and ``docs/checks.md`` and the code listing the start of ``checks_planted.py``.)

:func:`render_pictures` returns the pictures (RGB arrays) and the names of those that hold an MRI slice
(the caller does not crop these: a crop could keep little but the slice). Without chromium the
screenshots are left out, with a line on stderr.
"""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = ("signal cohort slice volume scanner protocol contrast cluster feature model voxel the of and a in to is "
         "with for we on result measured median report folder image series axial sagittal coronal").split()

# The fixed text of the pages: neutral technical prose written for this benchmark (it does not describe
# brainclust). Change it and the planting's pictures, and so its table in docs/checks.md, change.
GUIDE_MD = """# tilecount

A small command-line tool that reads a folder of pictures, measures each one and writes a table of
the measurements. It runs offline, keeps no state between runs and never changes the input folder.
The measurements are simple on purpose: size, mean level, spread, the share of dark and bright
pixels and a coarse fingerprint that lets two copies of one picture be found again.

```bash
python3 -m venv .venv
.venv/bin/pip install -e .          # the tool and the `tilecount` command
tilecount scan photos/ --out table.csv
```

**Contents:** [Install](#install) · [Usage](#usage) · [Columns](#columns) · [Limits](#limits)

## Install

The tool needs Python 3.10 or later and two libraries, one to decode pictures and one for arrays.
Both are installed with it. Nothing is fetched at run time: a machine without a network runs it as
well as one with a network, provided the libraries are there.

## Usage

Point the command at a folder; sub-folders are searched too. Files it cannot decode are listed at
the end with the reason, and the run goes on without them.

```bash
tilecount scan photos/ --out table.csv              # one row per picture
tilecount scan photos/ --out table.csv --workers 4  # four processes
tilecount pairs table.csv --out pairs.csv           # pictures whose fingerprints agree
tilecount summary table.csv                         # counts and medians, one line each
```

- `--workers N` decodes in N processes; the rows come out in the same order whatever N is.
- `--min-side N` skips pictures smaller than N pixels on a side and says how many were skipped.
- `--follow-links` follows symbolic links; by default they are listed and left alone.
- `--quiet` prints only the final line.

## Columns

| column | meaning | unit |
| --- | --- | --- |
| `path` | the file, relative to the folder scanned | text |
| `width`, `height` | the size of the decoded picture | pixels |
| `mean` | the mean level of its grey version | 0-255 |
| `spread` | the distance between its 5th and 95th percentiles | 0-255 |
| `dark` | the share of pixels below a quarter of the spread | fraction |
| `bright` | the share of pixels above three quarters of the spread | fraction |
| `fingerprint` | 64 bits from an 8 by 8 average of the grey version | hex |

Two pictures whose fingerprints differ in at most four bits are listed by `pairs`. A resized copy
or a copy saved again at a lower quality usually stays within that distance; a cropped copy often
does not.

## Limits

The fingerprint is coarse: two different pictures of a plain sky can agree. The measurements of a
picture with an alpha channel are taken on its colours alone, as if it were opaque. Very large
pictures are decoded whole, so memory grows with the largest one, not with the number of files.
"""

NOTES_MD = """# Measuring a folder of pictures: notes on the rules

These notes describe how the rules that sort a folder of pictures were chosen, which figures they
rest on and where they fail. Each rule reads only the pixels and the size of a picture, never its
name or its folder, so renaming the files changes nothing.

## Rules

Every rule is a comparison of one measurement with one threshold. The thresholds live in one place
and can be changed from the command line (`--set name=value,...`); a name that is not a threshold is
refused with the list of names.

| rule | condition | default | why |
| --- | --- | --- | --- |
| `empty` | the spread of the levels is below a few steps | 3 | \
a constant picture, or one with a faint mark, carries nothing to measure |
| `small` | the shorter side is below the minimum | 32 | the fingerprint of a tiny picture is mostly interpolation |
| `grainy` | the 8 by 8 block average keeps little of the variance | 0.15 | \
independent grain averages out; drawn shapes do not |
| `copy` | the decoded pixels hash to those of an earlier picture | exact | a lossless re-save is the same picture |
| `near copy` | the fingerprints agree to within the distance | 4 bits | resized and recompressed copies stay close |

```python
from tilecount.rules import Thresholds, sort_folder
result = sort_folder("photos/", thresholds=Thresholds(min_side=48))
print(result.counts())   # {'empty': 2, 'small': 0, 'grainy': 1, 'copy': 5, 'near copy': 9}
```

## Measured

A test folder was made from pictures with a known answer: copies and near copies of real pictures,
constant and almost constant pictures, grain at several strengths, tiny pictures. The rules were
looked at on one such folder and reported on another, made with a different seed, so that the figures
are not those of the folder the thresholds were read from.

| rule | planted | flagged | true | precision | recall |
| --- | ---: | ---: | ---: | ---: | ---: |
| `empty` | 15 | 15 | 15 | 1.000 | 1.000 |
| `small` | 10 | 10 | 10 | 1.000 | 1.000 |
| `grainy` | 15 | 16 | 15 | 0.938 | 1.000 |
| `copy` | 30 | 30 | 30 | 1.000 | 1.000 |
| `near copy` | 96 | 101 | 90 | 0.891 | 0.938 |

- The one picture called `grainy` by mistake is a page of very small text: its strokes average out
  under the block average as grain does.
- The near copies missed are crops that cut more than a tenth of a side: the fingerprint moves with
  the frame. Comparing the pixels of the two pictures at the best offset would find them, at a cost
  that grows with the square of the number of candidate pairs.
- No threshold was moved to fit the reported folder.

## Known limits

Two pictures of one scene taken a moment apart are near copies to these rules, and so are two frames
of one film. Whether that is wanted depends on the use: for a training set it is, since such pairs on
both sides of a split make the scores look better than they are.
"""

CODE_LISTING = """\"\"\"Summaries of a table of measurements, one line per column.\"\"\"

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Summary:
    name: str
    count: int
    missing: int
    low: float
    median: float
    high: float

    def line(self) -> str:
        return (f"{self.name}: {self.count} values ({self.missing} missing), "
                f"median {self.median:.3g}, range {self.low:.3g} to {self.high:.3g}")


def read_table(path: Path) -> dict[str, list[str]]:
    \"\"\"The columns of a CSV file with a header line, as lists of strings.\"\"\"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file")
    header, body = rows[0], rows[1:]
    columns: dict[str, list[str]] = {name: [] for name in header}
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{number}: {len(row)} fields, the header has {len(header)}")
        for name, value in zip(header, row):
            columns[name].append(value)
    return columns


def as_numbers(values: list[str]) -> tuple[list[float], int]:
    \"\"\"The values that parse as finite numbers, and how many did not.\"\"\"
    numbers, missing = [], 0
    for value in values:
        try:
            x = float(value)
        except ValueError:
            missing += 1
            continue
        if math.isfinite(x):
            numbers.append(x)
        else:
            missing += 1
    return numbers, missing


def summarise(columns: dict[str, list[str]]) -> list[Summary]:
    out = []
    for name, values in columns.items():
        numbers, missing = as_numbers(values)
        if not numbers:
            continue
        out.append(Summary(name, len(numbers), missing, min(numbers), statistics.median(numbers),
                           max(numbers)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: summary TABLE.csv")
        return 2
    try:
        columns = read_table(Path(argv[0]))
    except (OSError, ValueError) as err:
        print(f"summary: {err}")
        return 1
    for s in summarise(columns):
        print(s.line())
    return 0
"""


def _figure(w: float, h: float, style: str = "default"):
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context(style):
        fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _pixels(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def charts(rng, slices: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Twelve matplotlib figures; ``mri_colourbar`` and ``mri_panels`` show an MRI slice."""
    import matplotlib.style

    out = {}
    x = np.linspace(0, 10, 200)
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    for k in range(4):
        ax.plot(x, np.sin(x * rng.uniform(0.5, 2)) * rng.uniform(0.5, 2) + k, label=f"run {k}")
    ax.set(xlabel="epoch", ylabel="loss", title="Training curves")
    ax.legend()
    ax.grid(True)
    out["line_plot"] = _pixels(fig)
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.bar(["glioma", "meningioma", "pituitary", "none"], rng.integers(50, 400, 4), color=["C0", "C1", "C2", "C3"])
    ax.set(title="Slices per class", ylabel="count")
    out["bar_chart"] = _pixels(fig)
    fig = _figure(6, 6)
    ax = fig.subplots()
    for k in range(3):
        pts = rng.normal(rng.uniform(-3, 3, 2), 0.8, (120, 2))
        ax.scatter(pts[:, 0], pts[:, 1], s=12, label=f"cluster {k}")
    ax.set(title="UMAP of the features", xlabel="u1", ylabel="u2")
    ax.legend()
    out["scatter_plot"] = _pixels(fig)
    fig = _figure(6.5, 4)
    ax = fig.subplots()
    ax.hist(slices[0].ravel(), bins=64, color="0.3")
    ax.set(title="Grey levels of one slice", xlabel="grey level", ylabel="pixels", yscale="log")
    out["mri_histogram"] = _pixels(fig)
    fig = _figure(6, 5)
    ax = fig.subplots()
    im = ax.imshow(slices[1], cmap="gray")
    fig.colorbar(im, ax=ax, label="intensity")
    ax.set_title("T1 slice")
    out["mri_colourbar"] = _pixels(fig)
    fig = _figure(6, 5)
    ax = fig.subplots()
    im = ax.imshow(np.corrcoef(rng.normal(size=(12, 40))), cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set_title("Feature correlation")
    out["heatmap_colourbar"] = _pixels(fig)
    fig = _figure(5, 5)
    ax = fig.subplots()
    ax.pie(rng.integers(5, 40, 5), labels=list("ABCDE"), autopct="%1.0f%%")
    out["pie_chart"] = _pixels(fig)
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.boxplot([rng.normal(m, 1, 80) for m in rng.uniform(0, 4, 5)])
    ax.set(title="NMI per backbone", xticks=range(1, 6), xticklabels=["effnet", "incv3", "resnet", "dino", "vit"])
    out["box_plot"] = _pixels(fig)
    fig = _figure(6, 5)
    ax = fig.subplots()
    gx, gy = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200))
    cs = ax.contourf(gx, gy, np.exp(-gx ** 2 - gy ** 2) + 0.5 * np.exp(-(gx - 1.5) ** 2 - (gy + 1) ** 2), 12)
    fig.colorbar(cs, ax=ax)
    out["contour_plot"] = _pixels(fig)
    with matplotlib.style.context("dark_background"):
        fig = _figure(7, 4)
        ax = fig.subplots()
        for k in range(3):
            ax.plot(np.cumsum(rng.normal(size=300)), lw=1)
        ax.set(title="Throughput (images/s)", xlabel="batch")
        out["dark_line_plot"] = _pixels(fig)
    fig = _figure(5, 5)
    ax = fig.subplots(subplot_kw={"projection": "polar"})
    theta = np.linspace(0, 2 * np.pi, 400)
    ax.plot(theta, 1 + 0.5 * np.cos(rng.integers(2, 7) * theta))
    out["polar_plot"] = _pixels(fig)
    fig = _figure(9, 6)
    axes = fig.subplots(2, 2)
    axes[0, 0].imshow(slices[2], cmap="gray")
    axes[0, 0].set_title("input slice")
    axes[0, 1].plot(np.cumsum(rng.normal(size=100)))
    axes[0, 1].set_title("profile")
    axes[1, 0].hist(slices[2].ravel(), bins=40)
    axes[1, 1].bar(range(6), rng.integers(1, 10, 6))
    fig.tight_layout()
    out["mri_panels"] = _pixels(fig)
    return out


def _fonts() -> list[Path]:
    import matplotlib

    mpl = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [mpl / n for n in ("DejaVuSerif.ttf", "DejaVuSansMono.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf")]
    lib = Path("/usr/share/fonts/truetype/liberation")
    names += [p for p in (lib / "LiberationSans-Regular.ttf", lib / "LiberationSerif-Bold.ttf") if p.is_file()]
    return names


def _sentences(rng, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, int(rng.integers(5, 14)))).capitalize() + "." for _ in range(n)]


def text_pictures(rng) -> dict[str, np.ndarray]:
    """A page of text per font, wrapped to the width; the last one light grey on near-black."""
    out = {}
    fonts = _fonts()
    for k, path in enumerate(fonts):
        dark = k == len(fonts) - 1
        w, h = int(rng.integers(500, 900)), int(rng.integers(400, 800))
        im = Image.new("RGB", (w, h), (18, 18, 22) if dark else (255, 255, int(rng.integers(230, 256))))
        d = ImageDraw.Draw(im)
        font = ImageFont.truetype(str(path), int(rng.integers(14, 26)))
        y, line = 20, ""
        for word in " ".join(_sentences(rng, 60)).split():
            if d.textlength(line + " " + word, font=font) > w - 40:
                d.text((20, y), line, font=font, fill=(210, 210, 210) if dark else (0, 0, 0))
                y, line = y + int(font.size * 1.4), ""
                if y > h - 2 * font.size:
                    break
            line = f"{line} {word}".strip()
        out[f"text_{path.stem}"] = np.asarray(im)
    return out


def diagrams(rng) -> dict[str, np.ndarray]:
    """A flow chart (PIL), a tree and a Venn diagram (matplotlib)."""
    from matplotlib.patches import Circle

    out = {}
    im = Image.new("RGB", (900, 360), "white")
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype(str(_fonts()[0]), 16)
    steps = ["scan", "decode", "describe", "check", "features", "cluster", "report"]
    for k, s in enumerate(steps):
        x, y = 20 + k * 125, 140 + int(rng.integers(-40, 40))
        d.rounded_rectangle([x, y, x + 100, y + 60], 10, outline="black", width=2,
                            fill=tuple(int(v) for v in rng.integers(170, 255, 3)))
        d.text((x + 12, y + 20), s, fill="black", font=font)
        if k:
            d.line([x - 25, y + 30, x, y + 30], fill="black", width=2)
            d.polygon([(x, y + 30), (x - 8, y + 25), (x - 8, y + 35)], fill="black")
    out["flow_chart"] = np.asarray(im)
    fig = _figure(7, 5)
    ax = fig.subplots()
    ax.axis("off")
    levels = [[(0.5, 0.9)], [(0.25, 0.6), (0.75, 0.6)], [(0.1, 0.3), (0.4, 0.3), (0.6, 0.3), (0.9, 0.3)]]
    for up, down in zip(levels, levels[1:]):
        for j, (x, y) in enumerate(down):
            px, py = up[j * len(up) // len(down)]
            ax.plot([px, x], [py, y], "k-")
    for lvl in levels:
        for x, y in lvl:
            ax.text(x, y, f"n{int(rng.integers(10, 99))}", ha="center", va="center",
                    bbox={"boxstyle": "round", "fc": "lightyellow"})
    out["tree_diagram"] = _pixels(fig)
    fig = _figure(6, 5)
    ax = fig.subplots()
    for (cx, cy), c, label in zip([(0.4, 0.55), (0.6, 0.55), (0.5, 0.38)], ["red", "green", "blue"], "ABC"):
        ax.add_patch(Circle((cx, cy), 0.22, alpha=0.35, color=c))
        ax.text(cx + (cx - 0.5) * 1.2, cy + (cy - 0.5) * 1.2, label, fontsize=18)
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    ax.axis("off")
    out["venn_diagram"] = _pixels(fig)
    return out


def markdown_html(text: str) -> str:
    """A small Markdown to HTML: headings, fenced code, tables, list items, paragraphs, inline code and bold."""
    inline = lambda s: re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", re.sub(r"`([^`]+)`", r"<code>\1</code>",  # noqa: E731
                                                                   html.escape(s)))
    out, code, table = [], False, False
    for line in text.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if code else "<pre>")
            code = not code
            continue
        if code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-: "):
                continue
            out.append(("" if table else "<table>") + "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells)
                       + "</tr>")
            table = True
            continue
        if table:
            out.append("</table>")
            table = False
        m = re.match(r"(#+) (.*)", line)
        if m:
            out.append(f"<h{len(m[1])}>{inline(m[2])}</h{len(m[1])}>")
        elif line.lstrip().startswith(("- ", "* ")):
            out.append(f"<li>{inline(line.lstrip()[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    return "\n".join(out)


def _data_uri(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pages(rng, slices: list[np.ndarray]) -> dict[str, tuple[str, tuple[int, int]]]:
    """HTML pages to screenshot: name -> (html, window size)."""
    css = "body{font-family:%s;margin:24px;background:%s;color:%s} td{border:1px solid #999;padding:4px}"
    light = css % ("sans-serif", "white", "#111")
    rows = "".join(f"<tr><td>img_{k:04d}.png</td><td>{rng.integers(128, 1024)}</td><td>{rng.uniform(0, 1):.3f}</td>"
                   f"<td>{rng.choice(['', 'duplicate', 'blank', 'not_mri'])}</td></tr>" for k in range(30))
    fields = "".join(f"<p><label>{w}: <input value='{rng.choice(WORDS)}'></label> <input type=checkbox checked>"
                     f" <select><option>{rng.choice(WORDS)}</option></select></p>" for w in WORDS[:9])
    paragraphs = [f"<p>{' '.join(_sentences(rng, 6))}</p>" for _ in range(8)]
    article = "".join(paragraphs)
    cards = "".join(f"<div style='display:inline-block;width:200px;margin:10px;padding:10px;background:#eef;"
                    f"border-radius:8px'><h3>{w}</h3><div style='height:{int(rng.integers(20, 150))}px;"
                    f"background:hsl({int(rng.integers(0, 360))},60%,55%)'></div></div>" for w in WORDS[:8])
    source = html.escape(CODE_LISTING)
    info = "".join(f"<p>{k}: {v}</p>" for k, v in (("Series", "T1 AX"), ("Slice", 42), ("W/L", "400/40")))
    return {
        "page_checks_doc": (f"<style>{light}</style>" + markdown_html(NOTES_MD), (1280, 900)),
        "page_readme": (f"<style>{css % ('serif', '#fdfdf8', '#222')}</style>" + markdown_html(GUIDE_MD),
                        (1024, 1300)),
        "page_table": (f"<style>{light} tr:nth-child(odd){{background:#eef}}</style><h2>quality.csv</h2>"
                       f"<table><tr><th>path</th><th>width</th><th>z</th><th>flags</th></tr>{rows}</table>",
                       (900, 1000)),
        "page_form": (f"<style>{light}</style><h1>Settings</h1><form>{fields}<button>Save</button></form>", (800, 700)),
        "page_article": (f"<style>{css % ('Georgia,serif', 'white', '#222')}</style><h1>A study of slices</h1>"
                         f"<div style='columns:2'>{article}</div>", (1200, 800)),
        "page_article_mri": (f"<style>{light}</style><h1>Case of the week</h1>{paragraphs[0]}"
                             f"<img src='{_data_uri(slices[3])}' width=220 style='float:right'>{article}",
                             (1000, 800)),
        "page_dark_viewer": (f"<style>{css % ('monospace', 'black', '#ccc')}</style><div style='float:left;"
                             f"width:200px'>{info}</div><img src='{_data_uri(slices[4])}' height=520>", (1000, 600)),
        "page_terminal": (f"<style>{css % ('monospace', '#1e1e1e', '#d0d0d0')}</style><pre>"
                          + "\n".join(f"$ brainclust check data/{w} --out out/{w}\nchecks: {rng.integers(0, 99)} "
                                      f"duplicates, {rng.integers(0, 9)} blank" for w in WORDS[:14]) + "</pre>",
                          (900, 650)),
        "page_dashboard": (f"<style>{css % ('sans-serif', '#f4f4f8', '#111')}</style><h1>Runs</h1>{cards}",
                           (1000, 700)),
        "page_code": (f"<style>{css % ('monospace', '#fafafa', '#223')}</style><pre>{source}</pre>", (900, 1100)),
    }


def screenshots(rng, slices: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Headless chromium screenshots of :func:`_pages` (none without chromium)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        print("planted_render: chromium not found, the page screenshots are left out", file=sys.stderr)
        return {}
    out = {}
    work = Path(tempfile.mkdtemp(prefix="planted_pages_"))
    try:
        for name, (page, (w, h)) in _pages(rng, slices).items():
            (work / f"{name}.html").write_text(f"<!doctype html><meta charset=utf-8>{page}")
            cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={work / 'profile'}", f"--screenshot={work / name}.png", f"--window-size={w},{h}",
                   (work / f"{name}.html").as_uri()]
            subprocess.run(cmd, capture_output=True, timeout=120, check=False)
            if (work / f"{name}.png").is_file():
                out[name] = np.asarray(Image.open(work / f"{name}.png").convert("RGB"))
            else:
                print(f"planted_render: no screenshot of {name}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def render_pictures(rng, slices: list[np.ndarray]) -> tuple[dict[str, np.ndarray], set[str]]:
    """All the rendered pictures (name -> RGB array) and the names of those holding an MRI slice.

    ``slices``: at least five 8-bit grey MRI slices that are not in the planted folder."""
    out = {**charts(rng, slices), **text_pictures(rng), **diagrams(rng), **screenshots(rng, slices)}
    return out, {"mri_colourbar", "mri_panels", "page_article_mri", "page_dark_viewer"}
