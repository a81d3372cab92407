// medsearch page helpers: drop an image to search, draw a region on the query image, switch index.
// The pages work without this file; the search state always lives in the URL.
"use strict";

function setupDrop() {
  const form = document.getElementById("upload-form");
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("image-input");
  if (!form || !zone || !input) return;
  input.addEventListener("change", () => { if (input.files.length) form.submit(); });
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    if (!e.dataTransfer.files.length) return;
    input.files = e.dataTransfer.files;
    form.submit();
  });
}

function withParam(name, value) {
  const url = new URL(window.location.href);
  url.searchParams.delete("browse");
  if (value === null) url.searchParams.delete(name); else url.searchParams.set(name, value);
  return url.toString();
}

function setupCrop() {
  const img = document.getElementById("query-image");
  const canvas = document.getElementById("crop-canvas");
  const go = document.getElementById("crop-search");
  const clear = document.getElementById("crop-clear");
  if (!img || !canvas) return;
  let box = null, start = null;
  const figure = document.getElementById("query");
  const given = (figure && figure.dataset.crop) ? figure.dataset.crop.split(",").map(Number) : null;
  if (given && given.length === 4) box = given;

  function draw() {
    canvas.width = img.clientWidth; canvas.height = img.clientHeight;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!box) return;
    const [x0, y0, x1, y1] = [box[0] * canvas.width, box[1] * canvas.height, box[2] * canvas.width, box[3] * canvas.height];
    ctx.fillStyle = "rgba(0,0,0,0.45)";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.clearRect(x0, y0, x1 - x0, y1 - y0);
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  function at(e) {
    const r = canvas.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
  }
  canvas.addEventListener("pointerdown", (e) => { start = at(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (!start) return;
    const p = at(e);
    box = [Math.min(start[0], p[0]), Math.min(start[1], p[1]), Math.max(start[0], p[0]), Math.max(start[1], p[1])];
    draw();
  });
  canvas.addEventListener("pointerup", () => {
    start = null;
    if (box && (box[2] - box[0] < 0.02 || box[3] - box[1] < 0.02)) box = given;
    if (go) go.disabled = !box;
    draw();
  });
  if (go) go.addEventListener("click", () => {
    if (box) window.location.href = withParam("crop", box.map((v) => v.toFixed(4)).join(","));
  });
  if (clear) clear.addEventListener("click", () => { window.location.href = withParam("crop", null); });
  if (img.complete) draw(); else img.addEventListener("load", draw);
  window.addEventListener("resize", draw);
}

function setupIndexSwitch() {
  const select = document.getElementById("index-select");
  if (select) select.addEventListener("change", () => { window.location.href = "/i/" + encodeURIComponent(select.value) + "/"; });
}

document.addEventListener("DOMContentLoaded", () => { setupDrop(); setupCrop(); setupIndexSwitch(); });
