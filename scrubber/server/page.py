"""The review page: a queue of held instances, a frame with boxes to draw, release or reject.

One static page, no external assets (the server runs without internet). It talks to the JSON API
with the session cookie set at sign-in and sends the CSRF token (a second cookie, readable by the
page only on this origin, SameSite=Strict) in a header on every change. Keyboard: ``j``/``k`` next
and previous item, ``←``/``→`` frames, ``r`` release, ``x`` reject, ``Delete`` removes the selected
box. Drag on the image to draw a box; drag a box to move it; click a box to select it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REVIEW_PAGE", "SIGN_IN_PAGE"]

_STYLE: Final = """
body { font: 14px system-ui, sans-serif; margin: 0; display: flex; height: 100vh; }
#queue { width: 320px; overflow-y: auto; border-right: 1px solid #ccc; }
#queue li { padding: 6px 10px; cursor: pointer; border-bottom: 1px solid #eee; list-style: none; }
#queue li.current { background: #dde8ff; }
#queue ul { margin: 0; padding: 0; }
#main { flex: 1; padding: 10px; overflow: auto; }
canvas { border: 1px solid #888; cursor: crosshair; }
button { margin-right: 6px; }
.muted { color: #666; }
"""

SIGN_IN_PAGE: Final = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scrubber review: sign in</title>
<style>{_STYLE} body {{ display: block; padding: 20px; }}</style></head>
<body><h1>scrubber review</h1>
<form method="post" action="/review/sign-in">
<label>Reviewer token <input id="token" name="token" type="password" autocomplete="off"></label>
<button id="sign-in" type="submit">Sign in</button></form>
<p class="muted"><!--error--></p></body></html>
"""

REVIEW_PAGE: Final = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scrubber review</title><style>"""
    + _STYLE
    + """</style></head>
<body>
<div id="queue"><div style="padding:8px">
<label>Reason <select id="reason"><option value="">all</option></select></label>
<span id="count" class="muted"></span></div><ul id="items"></ul></div>
<div id="main">
<div id="empty" class="muted">Nothing is held. (j/k: next/previous, r: release, x: reject)</div>
<div id="detail" hidden>
<p><b id="why"></b> <span id="message" class="muted"></span></p>
<p>Frame <span id="frame"></span> / <span id="frames"></span>
<button id="prev-frame">&larr;</button><button id="next-frame">&rarr;</button>
<span class="muted">drag to draw, drag a box to move it, Delete removes the selected box</span></p>
<canvas id="view"></canvas>
<p><button id="release">Release (r)</button><button id="reject">Reject (x)</button>
<label><input id="accept" type="checkbox"> accept text left outside boxes</label>
<button id="delete-box">Delete box</button></p>
<p id="status" class="muted"></p>
</div></div>
<script>
"use strict";
const csrf = (document.cookie.split("; ").find(c => c.startsWith("scrubber_csrf=")) || "")
  .split("=")[1] || "";
let items = [], current = -1, detail = null, boxes = [], frame = 0, image = new Image();
let scale = 1, selected = -1, drag = null;
const canvas = document.getElementById("view"), ctx = canvas.getContext("2d");
const $ = id => document.getElementById(id);

async function api(path, options = {}) {
  options.headers = Object.assign({"X-CSRF-Token": csrf}, options.headers || {});
  options.credentials = "same-origin";
  const response = await fetch(path, options);
  if (!response.ok) {
    let text = response.status + "";
    try { const body = await response.json(); text += ": " + JSON.stringify(body.detail); }
    catch (e) {}
    throw new Error(text);
  }
  return response;
}

async function loadQueue(keep) {
  const reason = $("reason").value;
  const response = await api("/v1/quarantine" + (reason ? "?reason=" + reason : ""));
  items = await response.json();
  const reasons = new Set(items.map(i => i.reason));
  for (const r of reasons) {
    if (![...$("reason").options].some(o => o.value === r)) {
      const option = document.createElement("option"); option.value = r; option.textContent = r;
      $("reason").appendChild(option);
    }
  }
  $("count").textContent = items.length + " held";
  const list = $("items"); list.innerHTML = "";
  items.forEach((item, index) => {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    li.textContent = item.reason + " · " + item.held_at.replace("T", " ").replace("Z", "")
      + " · " + item.frames + " frame(s)";
    li.onclick = () => select(index);
    list.appendChild(li);
  });
  if (items.length === 0) { current = -1; $("detail").hidden = true; $("empty").hidden = false; return; }
  select(Math.min(Math.max(keep, 0), items.length - 1));
}

async function select(index) {
  current = index;
  document.querySelectorAll("#items li").forEach((li, i) => li.classList.toggle("current", i === index));
  const response = await api("/v1/quarantine/" + items[index].id);
  detail = await response.json();
  boxes = detail.boxes.map(b => ({frame: b[0], x: b[1], y: b[2], w: b[3], h: b[4]}));
  frame = Math.max(0, boxes.length && boxes[0].frame >= 0 ? boxes[0].frame : 0);
  selected = -1;
  $("why").textContent = detail.reason; $("message").textContent = detail.message || "";
  $("frames").textContent = detail.frames; $("empty").hidden = true; $("detail").hidden = false;
  $("status").textContent = "";
  loadFrame();
}

function loadFrame() {
  $("frame").textContent = frame + 1;
  image = new Image();
  image.onload = () => {
    scale = image.naturalWidth / detail.columns;
    canvas.width = image.naturalWidth; canvas.height = image.naturalHeight; draw();
  };
  image.src = "/v1/quarantine/" + detail.id + "/frames/" + frame + ".png";
}

function visible() { return boxes.map((b, i) => [b, i]).filter(([b]) => b.frame === -1 || b.frame === frame); }

function draw() {
  ctx.drawImage(image, 0, 0);
  for (const [b, i] of visible()) {
    ctx.strokeStyle = i === selected ? "#00e5ff" : "#ff2020"; ctx.lineWidth = 2;
    ctx.strokeRect(b.x * scale, b.y * scale, b.w * scale, b.h * scale);
  }
  if (drag && drag.mode === "draw") {
    ctx.strokeStyle = "#ffe000";
    ctx.strokeRect(drag.x0, drag.y0, drag.x1 - drag.x0, drag.y1 - drag.y0);
  }
}

function at(event) {
  const r = canvas.getBoundingClientRect();
  return [event.clientX - r.left, event.clientY - r.top];
}

canvas.addEventListener("mousedown", event => {
  const [x, y] = at(event);
  const hit = visible().reverse().find(([b]) => x >= b.x * scale && x <= (b.x + b.w) * scale
    && y >= b.y * scale && y <= (b.y + b.h) * scale);
  if (hit) { selected = hit[1]; drag = {mode: "move", x0: x, y0: y, box: {...boxes[hit[1]]}}; }
  else { selected = -1; drag = {mode: "draw", x0: x, y0: y, x1: x, y1: y}; }
  draw();
});
canvas.addEventListener("mousemove", event => {
  if (!drag) return;
  const [x, y] = at(event);
  if (drag.mode === "draw") { drag.x1 = x; drag.y1 = y; }
  else {
    const b = boxes[selected];
    b.x = Math.max(0, Math.round(drag.box.x + (x - drag.x0) / scale));
    b.y = Math.max(0, Math.round(drag.box.y + (y - drag.y0) / scale));
  }
  draw();
});
window.addEventListener("mouseup", () => {
  if (drag && drag.mode === "draw") {
    const x = Math.min(drag.x0, drag.x1) / scale, y = Math.min(drag.y0, drag.y1) / scale;
    const w = Math.abs(drag.x1 - drag.x0) / scale, h = Math.abs(drag.y1 - drag.y0) / scale;
    if (w >= 2 && h >= 2) {
      boxes.push({frame: detail.frames > 1 ? -1 : 0, x: Math.round(x), y: Math.round(y),
                  w: Math.round(w), h: Math.round(h)});
      selected = boxes.length - 1;
    }
  }
  drag = null; if (detail) draw();
});

function deleteSelected() { if (selected >= 0) { boxes.splice(selected, 1); selected = -1; draw(); } }

async function decide(action) {
  if (current < 0) return;
  const id = items[current].id;
  $("status").textContent = action === "release" ? "releasing (redact, read again)..." : "rejecting...";
  try {
    const options = {method: "POST"};
    if (action === "release") {
      options.headers = {"Content-Type": "application/json"};
      options.body = JSON.stringify({boxes: boxes.map(b => [b.frame, b.x, b.y, b.w, b.h]),
                                     accept_residual: $("accept").checked});
    }
    await api("/v1/quarantine/" + id + "/" + action, options);
    $("status").textContent = action === "release" ? "released" : "rejected";
    await loadQueue(current);
  } catch (error) { $("status").textContent = action + " failed: " + error.message; }
}

$("release").onclick = () => decide("release");
$("reject").onclick = () => decide("reject");
$("delete-box").onclick = deleteSelected;
$("prev-frame").onclick = () => { if (frame > 0) { frame--; loadFrame(); } };
$("next-frame").onclick = () => { if (detail && frame < detail.frames - 1) { frame++; loadFrame(); } };
$("reason").onchange = () => loadQueue(0);
document.addEventListener("keydown", event => {
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
  if (event.key === "j" && current < items.length - 1) select(current + 1);
  else if (event.key === "k" && current > 0) select(current - 1);
  else if (event.key === "ArrowRight") $("next-frame").click();
  else if (event.key === "ArrowLeft") $("prev-frame").click();
  else if (event.key === "r") decide("release");
  else if (event.key === "x") decide("reject");
  else if (event.key === "Delete" || event.key === "Backspace") deleteSelected();
});
loadQueue(0).catch(error => { $("status").textContent = error.message; });
</script></body></html>
"""
)
