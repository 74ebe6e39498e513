"""What ``brainclust view`` computes per request: the images in a viewport, density tiles, selections.

Every answer is bounded whatever the run's size: a viewport with more than
``point_limit`` images is answered with a density image of at most
1024 x 1024 bins instead of points; a list holds at most 500 rows per page;
a CSV is streamed in blocks. A *focus* (search substring, box or lasso
polygon, one category of one column) dims everything else; its mask is
memoised for the last few focuses (the page asks for the view, the tile and
the list of the same focus one after the other).

Density (as datashader's ``shade`` with ``how='log'``, in numpy): each bin's
colour is the mean colour of its images (category colours, or the ramp for a
numeric column), its opacity grows with the log of its count; images outside
the focus are drawn grey underneath.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from brainclust.errors import ParameterError
from brainclust.io.csvcell import formula_safe
from brainclust.report.viewdata import ViewData

#: Most images drawn as points; more in view are drawn as density.
POINT_LIMIT = 5000
MAX_BINS = 1024
MAX_PAGE = 500
MAX_POLY = 1000
MAX_QUERY = 300
GREY = np.array([175, 175, 175], dtype=np.float64)


@dataclass(frozen=True)
class Focus:
    """A search substring (lower case), a polygon ((x, y), ...) and a (column, code) category; all optional."""

    q: str = ""
    poly: tuple = ()
    cat: tuple = ()

    def __bool__(self) -> bool:
        return bool(self.q or self.poly or self.cat)


def parse_focus(params: dict, data: ViewData) -> Focus:
    """A :class:`Focus` from query parameters ``q``, ``sel`` (``x,y;x,y;...``), ``fcol`` and ``fcode``."""
    q = params.get("q", "")
    if len(q) > MAX_QUERY:
        raise ParameterError(f"q: at most {MAX_QUERY} characters, got {len(q)}")
    poly = ()
    if params.get("sel"):
        try:
            pts = tuple(tuple(float(v) for v in p.split(",")) for p in params["sel"].split(";"))
        except ValueError:
            raise ParameterError("sel: must be 'x,y;x,y;...' numbers") from None
        if not 3 <= len(pts) <= MAX_POLY or any(len(p) != 2 or not all(np.isfinite(p)) for p in pts):
            raise ParameterError(f"sel: needs 3 to {MAX_POLY} finite x,y vertices")
        poly = pts
    cat = ()
    if params.get("fcol"):
        col = data.by_name.get(params["fcol"])
        if col is None or col.kind != "cat":
            raise ParameterError("fcol: not a categorical column of this run")
        code = as_int(params.get("fcode"), "fcode", 0, len(col.categories) - 1)
        cat = (col.name, code)
    return Focus(q.lower(), poly, cat)


def as_int(text: str | None, name: str, lo: int, hi: int) -> int:
    """The integer of query parameter ``name`` (``None``: not in the query), in ``lo..hi``."""
    if text is None:
        raise ParameterError(f"{name}: missing; an integer in {lo}..{hi} is needed")
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: must be an integer, got {str(text)[:40]!r}") from None
    if not lo <= v <= hi:
        raise ParameterError(f"{name}: must be in {lo}..{hi}, got {v}")
    return v


def as_float(text: str | None, name: str) -> float:
    """The finite number of query parameter ``name`` (``None``: not in the query)."""
    if text is None:
        raise ParameterError(f"{name}: missing; a number is needed")
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: must be a number, got {str(text)[:40]!r}") from None
    if not np.isfinite(v) or abs(v) > 1e6:
        raise ParameterError(f"{name}: must be a finite number of reasonable size, got {v}")
    return v


def parse_box(params: dict) -> tuple[float, float, float, float, int, int]:
    """``x0, y0, x1, y1`` (map units, x0 < x1, y0 < y1) and ``w, h`` (bins, 1..1024)."""
    x0, y0, x1, y1 = (as_float(params.get(k), k) for k in ("x0", "y0", "x1", "y1"))
    if not (x1 > x0 and y1 > y0):
        raise ParameterError("x0, y0, x1, y1: need x0 < x1 and y0 < y1")
    return x0, y0, x1, y1, as_int(params.get("w"), "w", 1, MAX_BINS), as_int(params.get("h"), "h", 1, MAX_BINS)


class Queries:
    """The per-request computations on one :class:`ViewData` (thread-safe; memoised focus masks)."""

    def __init__(self, data: ViewData, point_limit: int = POINT_LIMIT):
        self.data = data
        self.point_limit = point_limit
        self._masks: OrderedDict[Focus, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def mask(self, focus: Focus) -> np.ndarray | None:
        """Boolean mask of the images in the focus (``None`` = no focus: every image)."""
        if not focus:
            return None
        with self._lock:
            if focus in self._masks:
                self._masks.move_to_end(focus)
                return self._masks[focus]
        d = self.data
        m = np.ones(d.n, dtype=bool)
        if focus.cat:
            m &= d.by_name[focus.cat[0]].codes == focus.cat[1]
        if focus.poly:
            from matplotlib.path import Path as MplPath

            poly = np.asarray(focus.poly, dtype=np.float64)
            (bx0, by0), (bx1, by1) = poly.min(axis=0), poly.max(axis=0)
            cand = np.flatnonzero(m & (d.x >= bx0) & (d.x <= bx1) & (d.y >= by0) & (d.y <= by1))
            inside = MplPath(poly).contains_points(d.xy[cand].astype(np.float64)) if len(cand) else []
            m = np.zeros(d.n, dtype=bool)
            m[cand[np.asarray(inside, dtype=bool)]] = True
        if focus.q:
            import pyarrow.compute as pc

            def matches(text: str) -> np.ndarray:
                found = pc.match_substring(d.paths, text, ignore_case=True)
                return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)

            hit = matches(focus.q)  # as assignments.csv holds the name; the few with an escape also as it is shown
            for j in np.flatnonzero(matches("\\") & ~hit):
                hit[j] = focus.q in d.shown_path(int(j)).lower()
            m &= hit
        with self._lock:
            self._masks[focus] = m
            while len(self._masks) > 8:
                self._masks.popitem(last=False)
        return m

    def _in_box(self, x0, y0, x1, y1) -> np.ndarray:
        d = self.data
        return np.flatnonzero((d.x >= x0) & (d.x < x1) & (d.y >= y0) & (d.y < y1))

    def view(self, box, by: str, focus: Focus) -> dict:
        """The images in the box: as points (at most ``point_limit``) or just their count (draw density)."""
        x0, y0, x1, y1, _, _ = box
        d = self.data
        idx = self._in_box(x0, y0, x1, y1)
        m = self.mask(focus)
        out = {"count": int(len(idx)), "limit": self.point_limit, "focus": int(m.sum()) if m is not None else d.n}
        if len(idx) > self.point_limit:
            out["mode"] = "density"
            return out
        col = d.by_name.get(by)
        rgb = col.rgb(idx) if col is not None else np.tile(np.array([31, 119, 180], np.uint8), (len(idx), 1))
        out.update(mode="points", i=idx.tolist(), x=np.round(d.x[idx], 6).tolist(), y=np.round(d.y[idx], 6).tolist(),
                   c=["#%02x%02x%02x" % tuple(c) for c in rgb.tolist()],
                   f=m[idx].astype(int).tolist() if m is not None else None)
        return out

    def tile(self, box, by: str, focus: Focus) -> bytes:
        """PNG (RGBA, w x h bins) of the density of the images in the box."""
        from PIL import Image

        x0, y0, x1, y1, w, h = box
        d = self.data
        idx = self._in_box(x0, y0, x1, y1)
        fx = ((d.x[idx] - np.float32(x0)) * np.float32(w / (x1 - x0))).astype(np.int32)
        fy = ((d.y[idx] - np.float32(y0)) * np.float32(h / (y1 - y0))).astype(np.int32)
        np.minimum(fx, w - 1, out=fx)
        np.minimum(fy, h - 1, out=fy)
        flat = fy * np.int32(w) + fx
        m = self.mask(focus)
        on = m[idx] if m is not None else None
        count = np.bincount(flat, minlength=w * h)
        flat_on = flat[on] if on is not None else flat
        rgb = self._bin_colours(d.by_name.get(by), idx if on is None else idx[on], flat_on, w * h)
        top = max(int(count.max()) if len(count) else 0, 1)
        alpha = np.where(count > 0, 0.4 + 0.6 * np.log1p(count) / np.log1p(top), 0.0)
        if on is not None:
            empty = np.bincount(flat_on, minlength=w * h) == 0
            rgb[empty] = GREY
            alpha = np.where(empty & (count > 0), 0.25, alpha)
        img = np.empty((w * h, 4), dtype=np.uint8)
        img[:, :3] = np.round(rgb)
        img[:, 3] = np.round(alpha * 255)
        buf = io.BytesIO()
        Image.fromarray(img.reshape(h, w, 4), mode="RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    @staticmethod
    def _bin_colours(col, idx: np.ndarray, flat: np.ndarray, n_bins: int) -> np.ndarray:
        """Mean colour (float, (n_bins, 3)) of the images ``idx`` in their bins ``flat``: one bincount over
        (bin, category) pairs for a categorical column, over values for a numeric one."""
        from brainclust.report.viewdata import RAMP_LUT

        out = np.tile(GREY, (n_bins, 1))
        if col is None:
            out[:] = (31, 119, 180)
            return out
        if col.kind == "cat":
            k = len(col.categories)
            pal = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in col.colours], dtype=np.float32)
            per = np.bincount(flat * np.int32(k) + col.codes[idx], minlength=n_bins * k).reshape(n_bins, k)
            tot = per.sum(axis=1)
            has = tot > 0
            out[has] = (per[has].astype(np.float32) @ pal) / tot[has, None]
            return out
        v = col.values[idx]
        ok = np.isfinite(v)
        if col.lo is None or not ok.any():
            return out
        span = (col.hi - col.lo) or 1.0
        t = np.clip((v[ok] - col.lo) / span, 0.0, 1.0) if col.hi > col.lo else np.full(int(ok.sum()), 0.5)
        cnt = np.bincount(flat[ok], minlength=n_bins)
        mean = np.bincount(flat[ok], weights=t, minlength=n_bins) / np.maximum(cnt, 1)
        has = cnt > 0
        out[has] = RAMP_LUT[np.round(mean[has] * 255).astype(int)]
        return out

    def nearest(self, x: float, y: float, r: float, focus: Focus) -> int | None:
        """The image closest to (x, y) within ``r`` (map units), preferring the focus when there is one."""
        d = self.data
        r = min(max(r, 0.0), 0.5)
        idx = self._in_box(x - r, y - r, x + r, y + r)
        m = self.mask(focus)
        if m is not None and m[idx].any():
            idx = idx[m[idx]]
        if not len(idx):
            return None
        dist = (d.x[idx] - x) ** 2 + (d.y[idx] - y) ** 2
        j = int(np.argmin(dist))
        return int(idx[j]) if dist[j] <= r * r else None

    def members(self, focus: Focus) -> np.ndarray:
        m = self.mask(focus)
        return np.arange(self.data.n) if m is None else np.flatnonzero(m)

    def page(self, focus: Focus, offset: int, limit: int) -> dict:
        """Rows ``offset .. offset+limit`` of the focus (in assignments.csv order), each with its caption."""
        rows = self.members(focus)
        part = rows[offset: offset + min(limit, MAX_PAGE)].tolist()
        d = self.data
        return {"total": int(len(rows)), "offset": offset,
                "items": [{"i": i, "name": d.shown_path(i), "caption": d.caption(i)} for i in part]}

    def csv_chunks(self, focus: Focus, block: int = 20000):
        """The focus's rows as CSV text blocks: ``row`` (1-based line in assignments.csv) and every column."""
        d = self.data
        names = d.table.column_names
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(["row", *map(formula_safe, names)])  # the run folder is untrusted: no cell a spreadsheet runs
        rows = self.members(focus)
        for s in range(0, len(rows), block):
            part = rows[s: s + block]
            cols = [d.table.column(c).take(part).to_pylist() for c in names]
            for j, i in enumerate(part.tolist()):
                w.writerow([i + 1, *("" if c[j] is None else formula_safe(c[j]) for c in cols)])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        if buf.tell():
            yield buf.getvalue()
