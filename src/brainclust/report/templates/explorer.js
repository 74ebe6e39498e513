/* brainclust explorer: one script for report.html (every point and thumbnail inside the file) and for
   `brainclust view` (the server draws density tiles and sends the points in view, bounded).
   Untrusted text (file names, metadata) only ever reaches the page through textContent or attributes. */
(function () {
  "use strict";
  var dataEl = document.getElementById("map-data");
  if (!dataEl) { return; }
  var D = JSON.parse(dataEl.textContent);
  var SERVER = D.mode === "server";
  var $ = function (id) { return document.getElementById(id); };
  var svg = $("map-clusters"), layer = $("map-layer"), pointsG = $("points"), selShape = $("sel-shape");
  if (!svg) { return; }
  var NS = svg.namespaceURI;
  if (D.strip && $("explorer")) { $("explorer").classList.add("units"); }  // unit runs: strips of slices
  var preview = $("map-preview"), pImg = preview.querySelector("img"), pCap = preview.querySelector(".cap");
  var statusEl = $("map-status"), legendEl = $("legend"), colourSel = $("colour-by");
  var PAGE = 48, R = 3.2;
  var cols = D.columns || [], colByName = {};
  cols.forEach(function (c) { colByName[c.name] = c; });
  var levels = cols.filter(function (c) { return /^level_\d+$/.test(c.name) && c.kind === "cat"; })
    .map(function (c) { return c.name; })
    .sort(function (a, b) { return parseInt(a.slice(6), 10) - parseInt(b.slice(6), 10); });

  // ---------------------------------------------------------------- state
  var state = {colour: colByName[D.colour] ? D.colour : (cols.length ? cols[0].name : null),
               level: levels.length ? levels[Math.min(levels.length - 1, 2)] : null,
               q: "", poly: null, cat: null, page: 0, mode: "pan", pinned: null};
  var view = {s: 1, tx: 0, ty: 0, s0: 1, W: 800, H: 580};

  function hex(c) { return "#" + c.map(function (v) { return ("0" + Math.round(v).toString(16)).slice(-2); }).join(""); }
  function rgb(h) { return [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)]; }
  function rampColour(col, v) {
    if (v === null || v === undefined || !isFinite(v) || col.lo === null) { return "#9e9e9e"; }
    var t = col.hi > col.lo ? (v - col.lo) / (col.hi - col.lo) : 0.5, stops = col.ramp;
    t = Math.max(0, Math.min(1, t)) * (stops.length - 1);
    var j = Math.min(stops.length - 2, Math.floor(t)), f = t - j, a = rgb(stops[j]), b = rgb(stops[j + 1]);
    return hex([0, 1, 2].map(function (k) { return a[k] + f * (b[k] - a[k]); }));
  }
  function fmtCount(n) { return n.toLocaleString("en-US"); }

  // ---------------------------------------------------------------- data: the file's own sample
  function fileApi() {
    var n = D.n, lower = null, pathCol = null;
    function shownName(i) { var s = D.shown ? D.shown[String(i)] : undefined; return s !== undefined ? s : D.names[i]; }
    function lowerNames() { if (!lower) { lower = D.names.map(function (s, i) { var sh = shownName(i); return (sh === s ? s : s + "\u0000" + sh).toLowerCase(); }); } return lower; }
    function value(col, i) {
      if (col.kind === "cat") {
        var code = col.codes[i];
        return (col.other && col.other[i] !== undefined) ? col.other[i] : (col.raw ? col.raw[code] : col.cats[code]);
      }
      if (col.kind === "num") { return col.values[i] === null ? "" : String(col.values[i]); }
      return col.texts ? col.texts[i] : (col.name === "path" ? D.names[i] : "");
    }
    function inPoly(px, py, poly) {
      var inside = false;
      for (var a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        var xa = poly[a][0], ya = poly[a][1], xb = poly[b][0], yb = poly[b][1];
        if ((ya > py) !== (yb > py) && px < (xb - xa) * (py - ya) / (yb - ya) + xa) { inside = !inside; }
      }
      return inside;
    }
    function matches() {
      var out = [], q = state.q, poly = state.poly, cat = state.cat, names = q ? lowerNames() : null;
      var catCol = cat ? colByName[cat.col] : null;
      for (var i = 0; i < n; i++) {
        if (q && names[i].indexOf(q) < 0) { continue; }
        if (catCol && catCol.codes[i] !== cat.code) { continue; }
        if (poly && !inPoly(D.x[i], D.y[i], poly)) { continue; }
        out.push(i);
      }
      return out;
    }
    var cache = null;
    function current() {
      var key = JSON.stringify([state.q, state.poly, state.cat]);
      if (!cache || cache.key !== key) { cache = {key: key, list: matches()}; }
      return cache.list;
    }
    cols.forEach(function (c) { if (c.name === "path") { pathCol = c; } });
    return {
      total: D.n_total, sampleNote: D.sampled,
      thumb: function (i) { return D.thumbs[i]; },
      big: function (i) { return D.thumbs[i]; },
      caption: function (i) {
        var text = shownName(i);
        var cl = colByName.cluster, lb = colByName.label;
        if (cl && cl.kind === "cat") { text += " | cluster " + cl.cats[cl.codes[i]]; }
        if (lb && lb.kind === "cat" && D.has_labels) { text += " | label " + lb.cats[lb.codes[i]]; }
        return text;
      },
      name: shownName,
      draw: function () {
        var colour = colourCol(), focus = anyFilter() ? current() : null, on = null;
        if (focus) { on = new Uint8Array(n); focus.forEach(function (i) { on[i] = 1; }); }
        var cs = new Array(n);
        for (var i = 0; i < n; i++) {
          cs[i] = !colour ? "#1f77b4" : colour.kind === "cat" ? colour.colours[colour.codes[i]]
            : rampColour(colour, colour.values[i]);
        }
        renderPoints(null, D.x, D.y, cs, on);
        drawn("points");
        setStatus(fmtCount(n) + (D.sampled ? " of " + fmtCount(D.n_total) + " images (a stratified sample: this file's size budget; `brainclust view` shows all)" : " images") +
                  (focus ? "; " + fmtCount(focus.length) + " selected" : ""));
        return Promise.resolve();
      },
      query: function (offset, limit) {
        var list = current();
        return Promise.resolve({total: list.length, items: list.slice(offset, offset + limit)});
      },
      row: function (i) {
        var cells = [["row in assignments.csv", String(D.rows[i] + 1)]];
        cells.push(["path", D.names[i]]);
        cols.forEach(function (c) { if (c.name !== "path") { cells.push([c.name, value(c, i)]); } });
        return Promise.resolve({cells: cells, note: "The thumbnail stored in this file (" + D.px +
          " px). The original is the path above, under the data folder " + (D.input || "") + "."});
      },
      download: function () {
        var list = current(), head = ["row", "path"].concat(cols.filter(function (c) { return c.name !== "path"; }).map(function (c) { return c.name; }));
        var lines = [head.map(csvCell).join(",")];
        list.forEach(function (i) {
          var r = [String(D.rows[i] + 1), D.names[i]];
          cols.forEach(function (c) { if (c.name !== "path") { r.push(value(c, i)); } });
          lines.push(r.map(csvCell).join(","));
        });
        var blob = new Blob([lines.join("\r\n") + "\r\n"], {type: "text/csv;charset=utf-8"});
        var url = URL.createObjectURL(blob);
        clickLink(url, "selection.csv");
        setTimeout(function () { URL.revokeObjectURL(url); }, 30000);
      },
      nearest: function () { return Promise.resolve(null); },
      counts: function (col) {
        var c = new Array(col.cats.length).fill(0);
        col.codes.forEach(function (k) { c[k]++; });
        return c;
      }
    };
  }
  function csvCell(v) {
    v = v === null || v === undefined ? "" : String(v);
    // = + - @ (or full-width) after any blanks would make a spreadsheet run the cell (numbers stay): its first
    // character is written \xNN / \uNNNN, as the outputs do (io/csvcell.py)
    var lead = v.match(/^[\s\ufeff\u200b\u200c\u200d\u2060]*/)[0].length;
    if (v.length - lead > 1 && "=+-@\uff1d\uff0b\uff0d\uff20".indexOf(v.charAt(lead)) >= 0 &&
        !/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(v)) {
      var c = v.charCodeAt(0);
      v = (c < 0x80 ? "\\x" + ("0" + c.toString(16)).slice(-2) : "\\u" + ("000" + c.toString(16)).slice(-4)) +
        v.slice(1);
    }
    return /[",\r\n]/.test(v) ? "\"" + v.replace(/"/g, "\"\"") + "\"" : v;
  }
  function clickLink(url, name) {
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    a.id = "download-link";
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  // ---------------------------------------------------------------- data: the `brainclust view` server
  function serverApi() {
    var seq = 0, captions = new Map();
    function params(extra) {
      var p = new URLSearchParams();
      if (state.q) { p.set("q", state.q); }
      if (state.poly) { p.set("sel", state.poly.map(function (v) { return v[0].toFixed(5) + "," + v[1].toFixed(5); }).join(";")); }
      if (state.cat) { p.set("fcol", state.cat.col); p.set("fcode", String(state.cat.code)); }
      Object.keys(extra || {}).forEach(function (k) { p.set(k, extra[k]); });
      return p;
    }
    function getJSON(url) {
      return fetch(url, {credentials: "same-origin"}).then(function (r) {
        if (!r.ok) { throw new Error(url.split("?")[0] + ": HTTP " + r.status); }
        return r.json();
      });
    }
    function box() {
      var x0 = (0 - view.tx) / view.s, y0 = (0 - view.ty) / view.s;
      return {x0: x0, y0: y0, x1: x0 + view.W / view.s, y1: y0 + view.H / view.s};
    }
    return {
      total: D.n_total, sampleNote: false,
      thumb: function (i) { return "/thumb/" + i + "?px=256"; },
      big: function (i) { return "/thumb/" + i + "?px=768"; },
      caption: function (i) {
        if (captions.has(i)) { return captions.get(i); }
        return getJSON("/api/row/" + i).then(function (r) {
          if (captions.size > 2000) { captions.clear(); }
          captions.set(i, r.caption);
          return r.caption;
        });
      },
      name: function (i, item) { return item && item.name !== undefined ? item.name : ""; },
      draw: function () {
        var b = box(), my = ++seq;
        var p = params({x0: b.x0.toFixed(6), y0: b.y0.toFixed(6), x1: b.x1.toFixed(6), y1: b.y1.toFixed(6),
                        w: String(Math.max(1, Math.round(view.W / 2))), h: String(Math.max(1, Math.round(view.H / 2))),
                        by: state.colour || ""});
        return getJSON("/api/view?" + p.toString()).then(function (v) {
          if (my !== seq) { return; }
          var sel = anyFilter() ? "; " + fmtCount(v.focus) + " selected" : "";
          if (v.mode === "points") {
            setDensity(null);
            renderPoints(v.i, v.x, v.y, v.c, v.f);
            drawn("points");
            setStatus(fmtCount(v.count) + " of " + fmtCount(D.n_total) + " images in view, drawn as points" + sel);
          } else {
            setDensity("/api/tile?" + p.toString(), b);   // the points go when the tile has loaded
            setStatus(fmtCount(v.count) + " of " + fmtCount(D.n_total) + " images in view, drawn as density (zoom in for points, " +
                      fmtCount(v.limit) + " at most)" + sel);
          }
        }).catch(function (e) { setStatus("server: " + e.message); });
      },
      query: function (offset, limit) {
        return getJSON("/api/list?" + params({offset: String(offset), limit: String(limit)}).toString())
          .then(function (r) { return {total: r.total, items: r.items.map(function (it) { captions.set(it.i, it.caption); return it.i; }), names: r.items}; });
      },
      row: function (i) {
        return getJSON("/api/row/" + i).then(function (r) {
          return {cells: [["row in assignments.csv", String(i + 1)]].concat(r.cells),
                  note: "Thumbnail made from the original file by `brainclust view` (768 px at most)."};
        });
      },
      download: function () { clickLink("/api/list.csv?" + params({}).toString(), "selection.csv"); },
      nearest: function (x, y, r) {
        return getJSON("/api/nearest?" + params({x: x.toFixed(6), y: y.toFixed(6), r: r.toFixed(6)}).toString())
          .then(function (h) { if (h && h.i !== null && h.i !== undefined) { captions.set(h.i, h.caption); } return h; });
      },
      counts: function (col) { return col.counts; }
    };
  }

  var api = SERVER ? serverApi() : fileApi();

  // ---------------------------------------------------------------- drawing
  // At most DOM_LIMIT points are SVG circles (hover and click through their own events); a larger set
  // (the report's thousands, or the server's points when many are in view) is painted on a canvas under
  // the SVG each frame, and hover and click find the nearest dot in JS.
  var DOM_LIMIT = typeof D.dom_limit === "number" ? D.dom_limit : 1200;
  var canvas = $("map-canvas"), ctx2d = canvas ? canvas.getContext("2d") : null;
  var circles = new Map(), pts = null, canvasMode = false, sprites = new Map();
  function renderPoints(ids, xs, ys, cs, on) {
    var n = ids ? ids.length : xs.length;
    pts = {ids: ids, xs: xs, ys: ys, cs: cs, on: on, n: n};
    if (n > DOM_LIMIT && ctx2d) {
      circles.forEach(function (c) { c.remove(); });
      circles.clear();
      canvasMode = true;
      paintCanvas();
      return;
    }
    if (canvasMode) { canvasMode = false; paintCanvas(); }
    var keep = new Set();
    for (var j = 0; j < n; j++) {
      var i = ids ? ids[j] : j, c = circles.get(i);
      if (!c) {
        c = document.createElementNS(NS, "circle");
        c.setAttribute("data-i", String(i));
        c.setAttribute("cx", String(xs[j]));
        c.setAttribute("cy", String(ys[j]));
        pointsG.appendChild(c);
        circles.set(i, c);
      }
      keep.add(i);
      c.setAttribute("fill", cs[j]);
      var dim = on ? !on[j] : false;
      if (c.classList.contains("dim") !== dim) { c.classList.toggle("dim", dim); }
      c.classList.toggle("sel", state.pinned === i);
    }
    circles.forEach(function (c, i) { if (!keep.has(i)) { c.remove(); circles.delete(i); } });
  }
  function sprite(colour, dpr) {
    var key = colour + "@" + dpr, sp = sprites.get(key);
    if (!sp) {
      var size = Math.ceil((2 * R + 2) * dpr);
      sp = document.createElement("canvas");
      sp.width = sp.height = size;
      var g = sp.getContext("2d");
      g.fillStyle = colour;
      g.beginPath(); g.arc(size / 2, size / 2, R * dpr, 0, 2 * Math.PI); g.fill();
      sprites.set(key, sp);
    }
    return sp;
  }
  function paintCanvas() {
    if (!ctx2d) { return; }
    var dpr = window.devicePixelRatio || 1, W = Math.round(view.W * dpr), H = Math.round(view.H * dpr);
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    ctx2d.setTransform(1, 0, 0, 1, 0, 0);
    ctx2d.clearRect(0, 0, W, H);
    if (!canvasMode || !pts) { return; }
    var half = (R + 1) * dpr, s = view.s * dpr, tx = view.tx * dpr, ty = view.ty * dpr, pinnedJ = -1;
    for (var pass = 0; pass < 2; pass++) {          // dimmed dots first, the focus on top
      ctx2d.globalAlpha = pass === 0 ? 0.13 : 1;
      for (var j = 0; j < pts.n; j++) {
        var dim = pts.on ? !pts.on[j] : false;
        if (dim !== (pass === 0)) { continue; }
        var x = tx + s * pts.xs[j], y = ty + s * pts.ys[j];
        if (x < -half || y < -half || x > W + half || y > H + half) { continue; }
        ctx2d.drawImage(sprite(pts.cs[j], dpr), x - half, y - half);
        if (state.pinned !== null && (pts.ids ? pts.ids[j] : j) === state.pinned) { pinnedJ = j; }
      }
    }
    ctx2d.globalAlpha = 1;
    [pinnedJ, hoverJ].forEach(function (j) {
      if (j < 0 || j >= pts.n) { return; }
      ctx2d.strokeStyle = "#000"; ctx2d.lineWidth = 1.6 * dpr;
      ctx2d.beginPath(); ctx2d.arc(tx + s * pts.xs[j], ty + s * pts.ys[j], (R + 1) * dpr, 0, 2 * Math.PI); ctx2d.stroke();
    });
  }
  var hoverJ = -1;
  function nearestDot(m) {
    // the dot under screen point m (within 6 px), preferring the focus; its row index or null
    if (!canvasMode || !pts) { return null; }
    var best = -1, bestD = 36, bestOn = false;
    for (var j = 0; j < pts.n; j++) {
      var dx = view.tx + view.s * pts.xs[j] - m[0], dy = view.ty + view.s * pts.ys[j] - m[1], d = dx * dx + dy * dy;
      var on = pts.on ? !!pts.on[j] : true;
      if (d <= 36 && ((on && !bestOn) || (on === bestOn && d < bestD))) { best = j; bestD = d; bestOn = on; }
    }
    hoverJ = best;
    return best < 0 ? null : (pts.ids ? pts.ids[best] : best);
  }
  var density = null, pendingImg = null;
  function setDensity(url, b) {
    if (pendingImg) { pendingImg.remove(); pendingImg = null; }
    if (!url) { if (density) { density.remove(); density = null; } return; }
    var img = document.createElementNS(NS, "image");
    img.setAttribute("preserveAspectRatio", "none");
    img.setAttribute("x", String(b.x0));
    img.setAttribute("y", String(b.y0));
    img.setAttribute("width", String(b.x1 - b.x0));
    img.setAttribute("height", String(b.y1 - b.y0));
    img.addEventListener("load", function () {
      if (img !== pendingImg) { return; }
      pendingImg = null;
      if (density) { density.remove(); }
      density = img;
      img.setAttribute("id", "density");
      if (circles.size || canvasMode) { renderPoints([], [], [], [], null); }
      drawn("density");
    });
    img.addEventListener("error", function () {
      if (img === pendingImg) { pendingImg = null; img.remove(); setStatus("server: a density tile failed to load"); }
    });
    pendingImg = img;
    img.setAttribute("href", url);
    layer.insertBefore(img, pointsG);
  }
  function setStatus(text) { statusEl.textContent = text; }
  var stats = {draws: 0, first: null, last: null, kind: null};
  function drawn(kind) {
    stats.draws++; stats.last = performance.now(); stats.kind = kind;
    if (stats.first === null) { stats.first = stats.last; }
  }

  var frame = 0, redrawTimer = 0, radiusS = 0, radiusTimer = 0;
  function applyRadius() {
    // every circle restyles when the radius changes: at most once per 25 % of zoom, and when zooming stops
    clearTimeout(radiusTimer);
    radiusS = view.s;
    svg.style.setProperty("--r", (R / view.s) + "px");
  }
  function applyView() {
    frame = 0;
    layer.setAttribute("transform", "translate(" + view.tx + "," + view.ty + ") scale(" + view.s + ")");
    if (canvasMode) { paintCanvas(); }
    if (!radiusS || Math.abs(Math.log(view.s / radiusS)) > 0.22) { applyRadius(); }
    else if (radiusS !== view.s) { clearTimeout(radiusTimer); radiusTimer = setTimeout(applyRadius, 120); }
  }
  function viewChanged() {
    if (!frame) { frame = requestAnimationFrame(applyView); }
    if (SERVER) { clearTimeout(redrawTimer); redrawTimer = setTimeout(api.draw, 140); }
  }
  function measure() {
    var r = svg.getBoundingClientRect();
    view.W = Math.max(50, r.width); view.H = Math.max(50, r.height);
    svg.setAttribute("viewBox", "0 0 " + view.W + " " + view.H);
    if (canvasMode) { paintCanvas(); }
  }
  function resetView() {
    measure();
    view.s0 = view.s = Math.min(view.W, view.H);
    view.tx = (view.W - view.s) / 2; view.ty = (view.H - view.s) / 2;
    applyView();
    if (SERVER) { api.draw(); }
  }
  function toData(px, py) { return [(px - view.tx) / view.s, (py - view.ty) / view.s]; }
  function local(ev) { var r = svg.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }

  // ---------------------------------------------------------------- preview, detail
  function showPreview(i, item) {
    pImg.src = api.thumb(i);
    pImg.alt = api.name(i, item) || "";
    pImg.setAttribute("data-i", String(i));
    var c = api.caption(i);
    if (typeof c === "string") { pCap.textContent = c; }
    else { pCap.textContent = "…"; c.then(function (t) { if (pImg.getAttribute("data-i") === String(i)) { pCap.textContent = t; pImg.alt = t.split(" | ")[0]; } }); }
  }
  function pin(i) {
    var old = state.pinned === null ? null : circles.get(state.pinned);
    if (old) { old.classList.remove("sel"); }
    state.pinned = i;
    var c = i === null ? null : circles.get(i);
    if (c) { c.classList.add("sel"); }
    if (canvasMode) { paintCanvas(); }
    if (i !== null) { showPreview(i); }
  }
  var detail = $("detail");
  function openDetail(i) {
    pin(i);
    $("detail-img").src = api.big(i);
    $("detail-path").textContent = "";
    var table = $("detail-table");
    while (table.firstChild) { table.removeChild(table.firstChild); }
    api.row(i).then(function (r) {
      r.cells.forEach(function (cell) {
        var tr = document.createElement("tr"), th = document.createElement("th"), td = document.createElement("td");
        th.textContent = cell[0]; td.textContent = cell[1];
        tr.appendChild(th); tr.appendChild(td); table.appendChild(tr);
        if (cell[0] === "path") { $("detail-path").textContent = cell[1]; $("detail-img").alt = cell[1]; }
      });
      $("detail-note").textContent = r.note;
    });
    if (detail.showModal && !detail.open) { detail.showModal(); } else { detail.setAttribute("open", ""); }
  }
  $("detail-close").addEventListener("click", function () { if (detail.close) { detail.close(); } else { detail.removeAttribute("open"); } });
  detail.addEventListener("click", function (ev) { if (ev.target === detail && detail.close) { detail.close(); } });
  pImg.addEventListener("click", function () { var i = pImg.getAttribute("data-i"); if (i !== null) { openDetail(parseInt(i, 10)); } });

  // ---------------------------------------------------------------- colour, legend
  function colourCol() { return state.colour ? colByName[state.colour] : null; }
  function buildColourSelect() {
    var seenLevel = false;
    cols.forEach(function (c) {
      if (c.kind === "text") { return; }
      if (levels.indexOf(c.name) >= 0) {
        if (seenLevel) { return; }
        seenLevel = true;
        var o = document.createElement("option");
        o.value = "@level"; o.textContent = "tree level (" + levels.length + " levels)";
        colourSel.appendChild(o);
        return;
      }
      var opt = document.createElement("option");
      opt.value = c.name;
      opt.textContent = c.name + (c.kind === "num" ? " (numeric)" : "");
      colourSel.appendChild(opt);
    });
    colourSel.value = levels.indexOf(state.colour) >= 0 ? "@level" : state.colour;
  }
  function setColour(name) {
    state.colour = name;
    if (levels.indexOf(name) >= 0) { state.level = name; }
    colourSel.value = levels.indexOf(name) >= 0 ? "@level" : name;
    var sw = $("level-switch");
    sw.hidden = levels.indexOf(name) < 0;
    if (!sw.hidden) {
      var k = levels.indexOf(name);
      $("level-value").textContent = name.replace("level_", "") + " (" + name + ")";
      $("level-down").disabled = k <= 0; $("level-up").disabled = k >= levels.length - 1;
    }
    buildLegend();
    redraw();
  }
  function buildLegend() {
    while (legendEl.firstChild) { legendEl.removeChild(legendEl.firstChild); }
    var col = colourCol();
    if (!col) { return; }
    var title = document.createElement("div");
    title.className = "hint";
    title.textContent = col.kind === "cat" ? col.name + ": click a value to list its images" : col.name;
    legendEl.appendChild(title);
    if (col.kind === "num") {
      var bar = document.createElement("div");
      bar.className = "ramp";
      bar.style.background = "linear-gradient(to right," + col.ramp.join(",") + ")";
      var ends = document.createElement("div");
      ends.className = "ramp-ends";
      [col.lo, col.hi].forEach(function (v) { var s = document.createElement("span"); s.textContent = v === null ? "n/a" : String(v); ends.appendChild(s); });
      legendEl.appendChild(bar); legendEl.appendChild(ends);
      return;
    }
    var counts = api.counts(col);
    col.cats.forEach(function (name, k) {
      var item = document.createElement("div");
      item.className = "legend-item";
      item.setAttribute("data-code", String(k));
      if (state.cat && state.cat.col === col.name && state.cat.code === k) { item.classList.add("on"); }
      var sw = document.createElement("span");
      sw.className = "sw"; sw.style.background = col.colours[k];
      var label = document.createElement("span");
      label.textContent = (col.name === "cluster" || levels.indexOf(col.name) >= 0) && name !== (D.unclustered || "noise") ? col.name.replace("level_", "level ") + " " + name : name;
      var cnt = document.createElement("span");
      cnt.className = "cnt"; cnt.textContent = fmtCount(counts[k] || 0);
      item.appendChild(sw); item.appendChild(label); item.appendChild(cnt);
      item.addEventListener("click", function () {
        var same = state.cat && state.cat.col === col.name && state.cat.code === k;
        state.cat = same ? null : {col: col.name, code: k, label: label.textContent};
        filtersChanged();
      });
      legendEl.appendChild(item);
    });
  }

  // ---------------------------------------------------------------- filters, gallery
  function anyFilter() { return !!(state.q || state.poly || state.cat); }
  function redraw() { return api.draw(); }
  function filtersChanged() {
    state.page = 0;
    buildLegend();
    redraw();
    refreshGallery();
  }
  function galleryTitle() {
    var parts = [];
    if (state.cat) { parts.push(state.cat.label); }
    if (state.poly) { parts.push(state.poly.kind + " selection"); }
    if (state.q) { parts.push("name contains \u201c" + state.q + "\u201d"); }
    return parts.join(" \u00b7 ");
  }
  function refreshGallery() {
    var g = $("gallery");
    if (!anyFilter()) { g.hidden = true; return Promise.resolve(); }
    g.hidden = false;
    $("gallery-title").textContent = galleryTitle();
    return api.query(state.page * PAGE, PAGE).then(function (res) {
      var pages = Math.max(1, Math.ceil(res.total / PAGE));
      if (state.page >= pages) { state.page = pages - 1; }
      $("gallery-count").textContent = fmtCount(res.total) + " image" + (res.total === 1 ? "" : "s") +
        (api.sampleNote ? " (of this file's sample)" : "");
      $("page-info").textContent = "page " + (state.page + 1) + " of " + pages;
      $("page-prev").disabled = state.page <= 0;
      $("page-next").disabled = state.page >= pages - 1;
      $("download-csv").disabled = res.total === 0;
      var grid = $("gallery-grid");
      while (grid.firstChild) { grid.removeChild(grid.firstChild); }
      res.items.forEach(function (i, j) {
        var item = res.names ? res.names[j] : null;
        var fig = document.createElement("figure"), im = document.createElement("img"), cap = document.createElement("figcaption");
        fig.setAttribute("data-i", String(i));
        im.src = api.thumb(i);
        im.alt = item ? item.name : api.name(i);
        cap.textContent = item ? item.name : api.name(i);
        fig.title = cap.textContent;
        fig.appendChild(im); fig.appendChild(cap);
        fig.addEventListener("click", function () { openDetail(i); });
        fig.addEventListener("mouseenter", function () { showPreview(i, item); });
        grid.appendChild(fig);
      });
    });
  }
  $("page-prev").addEventListener("click", function () { if (state.page > 0) { state.page--; refreshGallery(); } });
  $("page-next").addEventListener("click", function () { state.page++; refreshGallery(); });
  $("download-csv").addEventListener("click", function () { api.download(); });
  $("clear-selection").addEventListener("click", function () {
    state.q = ""; state.poly = null; state.cat = null;
    $("search").value = ""; selShape.setAttribute("d", "");
    filtersChanged();
  });
  var searchTimer = 0;
  $("search").addEventListener("input", function (ev) {
    clearTimeout(searchTimer);
    var v = ev.target.value.trim().toLowerCase();
    searchTimer = setTimeout(function () { if (v !== state.q) { state.q = v; filtersChanged(); } }, 180);
  });
  colourSel.addEventListener("change", function () { setColour(colourSel.value === "@level" ? state.level : colourSel.value); });
  $("level-down").addEventListener("click", function () { var k = levels.indexOf(state.colour); if (k > 0) { setColour(levels[k - 1]); } });
  $("level-up").addEventListener("click", function () { var k = levels.indexOf(state.colour); if (k < levels.length - 1) { setColour(levels[k + 1]); } });
  document.querySelectorAll("[data-browse-col]").forEach(function (b) {
    b.addEventListener("click", function () {
      var col = colByName[b.getAttribute("data-browse-col")], v = b.getAttribute("data-browse-value");
      if (!col || col.kind !== "cat") { return; }
      var k = col.cats.indexOf(v);
      if (k < 0) { return; }
      state.cat = {col: col.name, code: k, label: b.getAttribute("data-browse-label") || v};
      filtersChanged();
      $("explorer").scrollIntoView({behavior: "smooth", block: "start"});
    });
  });
  if (!SERVER) {
    var posOfRow = new Map();
    D.rows.forEach(function (r, s) { posOfRow.set(r, s); });
    document.querySelectorAll("[data-row]").forEach(function (el) {
      var s = posOfRow.get(parseInt(el.getAttribute("data-row"), 10));
      if (s === undefined) { return; }
      el.classList.add("zoomable");
      el.addEventListener("click", function () { openDetail(s); });
    });
  }

  // ---------------------------------------------------------------- mouse: zoom, pan, select, hover
  document.querySelectorAll(".modes button").forEach(function (b) {
    b.addEventListener("click", function () {
      state.mode = b.getAttribute("data-mode");
      document.querySelectorAll(".modes button").forEach(function (o) { o.classList.toggle("on", o === b); });
      svg.classList.toggle("box", state.mode === "box");
      svg.classList.toggle("lasso", state.mode === "lasso");
    });
  });
  $("reset-view").addEventListener("click", resetView);
  svg.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var m = local(ev), f = Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    var s = Math.max(view.s0 * 0.5, Math.min(view.s0 * 20000, view.s * f));
    view.tx = m[0] - (m[0] - view.tx) * s / view.s;
    view.ty = m[1] - (m[1] - view.ty) * s / view.s;
    view.s = s;
    viewChanged();
  }, {passive: false});
  var drag = null;
  svg.addEventListener("pointerdown", function (ev) {
    if (ev.button !== 0) { return; }
    var m = local(ev), kind = state.mode === "pan" && ev.shiftKey ? "box" : state.mode;
    drag = {kind: kind, start: m, last: m, moved: 0, pts: [toData(m[0], m[1])], target: ev.target};
    svg.setPointerCapture(ev.pointerId);
    if (kind === "pan") { svg.classList.add("dragging"); }
  });
  svg.addEventListener("pointermove", function (ev) {
    var m = local(ev);
    if (!drag) { hoverAt(m, ev); return; }
    drag.moved = Math.max(drag.moved, Math.abs(m[0] - drag.start[0]) + Math.abs(m[1] - drag.start[1]));
    if (drag.kind === "pan") {
      view.tx += m[0] - drag.last[0]; view.ty += m[1] - drag.last[1];
      viewChanged();
    } else if (drag.kind === "box") {
      var a = drag.start;
      selShape.setAttribute("d", "M" + a[0] + "," + a[1] + "H" + m[0] + "V" + m[1] + "H" + a[0] + "Z");
    } else {
      drag.pts.push(toData(m[0], m[1]));
      selShape.setAttribute("d", "M" + drag.pts.map(function (p) { return (p[0] * view.s + view.tx) + "," + (p[1] * view.s + view.ty); }).join("L") + "Z");
    }
    drag.last = m;
  });
  function endDrag(ev) {
    if (!drag) { return; }
    var d = drag, m = local(ev);
    drag = null;
    svg.classList.remove("dragging");
    if (d.moved < 4) {
      selShape.setAttribute("d", "");
      var t = d.target;
      var hit = canvasMode ? nearestDot(m) : null;
      if (t && t.tagName && t.tagName.toLowerCase() === "circle" && t.hasAttribute("data-i")) {
        openDetail(parseInt(t.getAttribute("data-i"), 10));
      } else if (hit !== null) {
        openDetail(hit);
      } else if (SERVER && density && hoverI !== null) {
        openDetail(hoverI);
      }
      return;
    }
    if (d.kind === "box") {
      var a = toData(d.start[0], d.start[1]), b = toData(m[0], m[1]);
      state.poly = [[a[0], a[1]], [b[0], a[1]], [b[0], b[1]], [a[0], b[1]]];
      state.poly.kind = "box";
    } else if (d.kind === "lasso" && d.pts.length > 2) {
      var step = Math.max(1, Math.ceil(d.pts.length / 200));
      state.poly = d.pts.filter(function (p, k) { return k % step === 0; });
      state.poly.kind = "lasso";
    } else {
      return;
    }
    filtersChanged();
  }
  svg.addEventListener("pointerup", endDrag);
  svg.addEventListener("pointercancel", function () { drag = null; svg.classList.remove("dragging"); });
  svg.addEventListener("mouseover", function (ev) {
    var t = ev.target;
    if (t && t.tagName && t.tagName.toLowerCase() === "circle" && t.hasAttribute("data-i")) {
      showPreview(parseInt(t.getAttribute("data-i"), 10));
    }
  });
  svg.addEventListener("mouseleave", function () { if (state.pinned !== null) { showPreview(state.pinned); } });
  var hoverTimer = 0, hoverI = null;
  function hoverAt(m, ev) {
    if (canvasMode) {
      var before = hoverJ, i = nearestDot(m);
      if (i !== null) { showPreview(i); }
      if (hoverJ !== before) { paintCanvas(); }
      return;
    }
    if (!SERVER || !density || (ev.target && ev.target.tagName && ev.target.tagName.toLowerCase() === "circle")) { return; }
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(function () {
      var p = toData(m[0], m[1]);
      api.nearest(p[0], p[1], 8 / view.s).then(function (r) {
        hoverI = r && r.i !== null && r.i !== undefined ? r.i : null;
        if (hoverI !== null) { showPreview(hoverI, r); }
      }).catch(function () { hoverI = null; });
    }, 70);
  }

  window.addEventListener("resize", function () {
    var cx = (view.W / 2 - view.tx) / view.s, cy = (view.H / 2 - view.ty) / view.s;
    measure();
    view.tx = view.W / 2 - cx * view.s; view.ty = view.H / 2 - cy * view.s;
    viewChanged();
  });

  // ---------------------------------------------------------------- start
  buildColourSelect();
  measure();
  view.s0 = view.s = Math.min(view.W, view.H);
  view.tx = (view.W - view.s) / 2; view.ty = (view.H - view.s) / 2;
  applyView();
  setColour(state.colour);
  window.brainclustExplorer = {state: state, view: view, api: api, redraw: redraw, refreshGallery: refreshGallery,
                               stats: stats, setColour: setColour, resetView: resetView,
                               drawnOnCanvas: function () { return canvasMode; }};
})();
