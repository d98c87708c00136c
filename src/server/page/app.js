// The page: an image, sentences, correction clicks, masks, downloads.
import { ApiError, apiKey, call, callForFile, plainWords, setApiKey, uploadImage } from "./api.js";
import { COLORS, annotation, base64ToBytes, decodeRle, geojsonOf, paintOverlay } from "./masks.js";

const OUTPUTS = ["rle", "png", "polygons"];
const DRAG_THRESHOLD_PX = 6;

const $ = (id) => document.getElementById(id);
const el = {
  stage: $("stage"),
  empty: $("empty"),
  dropZone: $("drop-zone"),
  picture: $("picture"),
  overlay: $("mask-overlay"),
  marks: $("marks"),
  busy: $("busy"),
  imageInput: $("image-input"),
  imageInfo: $("image-info"),
  imageSection: $("image-section"),
  textSection: $("text-section"),
  form: $("segment-form"),
  text: $("text-input"),
  segmentButton: $("segment-button"),
  undo: $("undo-button"),
  reset: $("reset-button"),
  opacity: $("opacity"),
  opacityValue: $("opacity-value"),
  results: $("results"),
  resultsEmpty: $("results-empty"),
  error: $("error"),
  modelStatus: $("model-status"),
  keyButton: $("key-button"),
  keyDialog: $("key-dialog"),
  keyForm: $("key-form"),
  keyInput: $("key-input"),
  keyError: $("key-error"),
  keyCancel: $("key-cancel"),
  negativeMode: $("negative-mode"),
  viewer: document.querySelector(".viewer"),
};

const state = {
  image: null, // { name, bytes, type, url, id, width, height, shown, ready }
  results: [], // entries; a refine replaces an entry by a new one
  selected: -1,
  highlight: -1,
  history: [], // earlier { results, selected }, for undo
  busy: false,
  cross: null, // the keyboard cross, [x, y] in image pixels
  drag: null,
  generation: 0, // bumped by each new image: late answers for an old one are dropped
};

// ---------------------------------------------------------------------------
// Errors, in plain words, next to what caused them
// ---------------------------------------------------------------------------

function showError(error, anchor) {
  el.error.textContent = typeof error === "string" ? error : plainWords(error);
  anchor.append(el.error);
  el.error.hidden = false;
  if (error instanceof ApiError && error.code === "unauthorized") askForKey(Boolean(apiKey()));
}

function clearError() {
  el.error.hidden = true;
  el.error.textContent = "";
}

// Runs one request at a time, with the busy sign; errors go next to `anchor`.
async function run(anchor, work) {
  if (state.busy) return;
  state.busy = true;
  el.busy.hidden = false;
  el.stage.setAttribute("aria-busy", "true");
  el.segmentButton.disabled = true;
  clearError();
  try {
    await work();
  } catch (error) {
    showError(error, anchor);
  } finally {
    state.busy = false;
    el.busy.hidden = true;
    el.stage.removeAttribute("aria-busy");
    el.segmentButton.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// The server and its API key
// ---------------------------------------------------------------------------

async function connect() {
  try {
    const info = await call("v1/model");
    el.modelStatus.textContent = `${info.model} · ${info.image_size} px · ${info.device} · ${info.dtype}`;
    el.modelStatus.classList.remove("bad");
    el.keyButton.hidden = !apiKey();
  } catch (error) {
    if (error.code === "unauthorized") {
      el.modelStatus.textContent = "This server needs an API key.";
      el.keyButton.hidden = false;
      askForKey(Boolean(apiKey()));
    } else if (error.code === "not_ready") {
      el.modelStatus.textContent = "The model is loading…";
      setTimeout(connect, 1000);
    } else {
      el.modelStatus.textContent = plainWords(error);
      el.modelStatus.classList.add("bad");
    }
  }
}

function askForKey(rejected) {
  if (el.keyDialog.open) return;
  el.keyError.hidden = !rejected;
  el.keyError.textContent = rejected ? "The server did not accept this key." : "";
  el.keyInput.value = apiKey();
  el.keyDialog.showModal();
  el.keyInput.focus();
}

el.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = el.keyInput.value.trim();
  if (!key) {
    el.keyError.textContent = "Type the key first.";
    el.keyError.hidden = false;
    return;
  }
  setApiKey(key);
  el.keyDialog.close();
  clearError();
  connect();
});
el.keyCancel.addEventListener("click", () => el.keyDialog.close());
el.keyButton.addEventListener("click", () => askForKey(false));

// ---------------------------------------------------------------------------
// The image
// ---------------------------------------------------------------------------

function showPicture(url) {
  return new Promise((resolve) => {
    el.picture.onload = () => resolve(true);
    el.picture.onerror = () => resolve(false);
    el.picture.src = url;
  });
}

function sizeStage(width, height) {
  el.stage.style.setProperty("--ratio", String(width / height));
}

async function loadImage(blob, name) {
  clearError();
  const generation = ++state.generation;
  if (state.image) URL.revokeObjectURL(state.image.url);
  const image = { name, type: blob.type, url: URL.createObjectURL(blob), id: null, width: 0, height: 0 };
  state.image = image;
  state.results = [];
  state.selected = -1;
  state.history = [];
  state.cross = null;
  el.empty.hidden = true;
  el.stage.hidden = false;
  el.imageInfo.textContent = `${name}: sending to the server…`;
  render();
  image.bytes = new Uint8Array(await blob.arrayBuffer());
  image.shown = await showPicture(image.url);
  if (image.shown) sizeStage(el.picture.naturalWidth, el.picture.naturalHeight);
  image.ready = warm(image, generation);
  return image.ready;
}

// Errors after which the same image may well work (a key given later, a
// server back up); after any other the server refused the image itself.
const PASSING = new Set(["unauthorized", "network", "not_ready", "overloaded", "timeout"]);

// Encodes the image on the server (the feature cache), which also checks it.
async function warm(image, generation) {
  let info;
  try {
    info = await uploadImage(image.bytes, image.type);
  } catch (error) {
    image.failure = error;
    if (generation === state.generation) {
      el.imageInfo.textContent = "";
      if (!PASSING.has(error.code)) {
        state.image = null;
        el.stage.hidden = true;
        el.empty.hidden = false;
      }
      showError(error, el.imageSection);
    }
    return false;
  }
  if (generation !== state.generation) return false;
  Object.assign(image, { id: info.image_id, width: info.width, height: info.height });
  sizeStage(info.width, info.height);
  el.stage.classList.toggle("blank", !image.shown);
  const encoded = info.cached ? "features already cached" : `encoded in ${formatMs(info.timings_ms.encode)}`;
  el.imageInfo.textContent = `${image.name}: ${info.width} × ${info.height} px, ${encoded}` +
    (image.shown ? "" : " (your browser cannot show this file type: the masks are drawn on a blank canvas)");
  render();
  return true;
}

// The image's id; an upload that failed for a passing reason is tried again.
async function imageId() {
  const image = state.image;
  if (!(await image.ready)) {
    image.ready = warm(image, state.generation);
    if (!(await image.ready)) throw image.failure;
  }
  return image.id;
}

// A segment request by image id; when the server has dropped the image's
// features, it gets the image again and the request is retried once.
async function segmentRequest(fields) {
  const body = { image_id: await imageId(), ...fields, outputs: OUTPUTS };
  try {
    return await call("v1/segment", body);
  } catch (error) {
    if (error.code !== "image_not_cached") throw error;
    await uploadImage(state.image.bytes, state.image.type);
    return call("v1/segment", body);
  }
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

function makeEntry({ text, label, color, response, index, points, box, replay }) {
  const result = response.results[index];
  const [height, width] = result.rle.size;
  return {
    text,
    label,
    color,
    result,
    mask: decodeRle(result.rle.counts, height, width),
    cached: response.cached,
    timings: response.timings_ms,
    geojson: geojsonOf(response, index),
    points,
    box,
    replay,
  };
}

function commit(results, selected) {
  state.history.push({ results: state.results, selected: state.selected });
  state.results = results;
  state.selected = selected;
  render();
}

function sentences() {
  return el.text.value
    .split("\n")
    .map((s) => s.trim())
    .filter(Boolean);
}

async function segment() {
  if (!state.image) {
    showError("Choose an image first, or start with a sample scene.", el.textSection);
    return;
  }
  const texts = sentences();
  if (!texts.length) {
    showError("Type a sentence first, for example “the ship below the bridge”.", el.textSection);
    el.text.focus();
    return;
  }
  const generation = state.generation;
  await run(el.textSection, async () => {
    const response = await segmentRequest({ queries: texts.map((text) => ({ text })) });
    if (generation !== state.generation) return;
    const entries = texts.map((text, index) =>
      makeEntry({
        text,
        label: text,
        color: COLORS[index % COLORS.length],
        response,
        index,
        points: [],
        box: null,
        replay: { path: "v1/segment", body: { image_id: response.image_id, text } },
      }),
    );
    commit(entries, 0);
  });
}

// A click ([x, y, label]) or a box ([x0, y0, x1, y1]) refines the selected
// result; with no result yet it starts one.
async function prompt(kind, value) {
  if (!state.image || state.busy) return;
  const generation = state.generation;
  const fields = kind === "point" ? { points: [value] } : { box: value };
  await run(el.viewer, async () => {
    const selected = state.results[state.selected];
    if (!selected) {
      const response = await segmentRequest(fields);
      if (generation !== state.generation) return;
      const entry = makeEntry({
        text: null,
        label: kind === "point" ? "Clicked object" : "Boxed object",
        color: COLORS[state.results.length % COLORS.length],
        response,
        index: 0,
        points: kind === "point" ? [value] : [],
        box: kind === "box" ? value : null,
        replay: { path: "v1/segment", body: { image_id: response.image_id, ...fields } },
      });
      commit([...state.results, entry], state.results.length);
      return;
    }
    const body = { result_id: selected.result.result_id, ...fields };
    const response = await call("v1/refine", { ...body, outputs: OUTPUTS });
    if (generation !== state.generation) return;
    const entry = makeEntry({
      ...selected,
      response,
      index: 0,
      points: kind === "point" ? [...selected.points, value] : selected.points,
      box: kind === "box" ? value : selected.box,
      replay: { path: "v1/refine", body },
    });
    const results = state.results.slice();
    results[state.selected] = entry;
    commit(results, state.selected);
  });
}

function undo() {
  const previous = state.history.pop();
  if (!previous || state.busy) return;
  state.results = previous.results;
  state.selected = previous.selected;
  clearError();
  render();
}

function reset() {
  if (!state.results.length || state.busy) return;
  commit([], -1);
  clearError();
}

// ---------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------

function render() {
  const image = state.image;
  el.undo.disabled = !state.history.length;
  el.reset.disabled = !state.results.length;
  renderResults();
  if (!image || !image.width) {
    el.overlay.width = el.overlay.height = 0;
    renderMarks();
    return;
  }
  paintOverlay(
    el.overlay,
    image.width,
    image.height,
    state.results.map((e) => ({ mask: e.mask, color: e.color })),
    state.highlight,
  );
  renderMarks();
}

function setHighlight(index) {
  if (state.highlight === index || !state.image?.width) return;
  state.highlight = index;
  paintOverlay(
    el.overlay,
    state.image.width,
    state.image.height,
    state.results.map((e) => ({ mask: e.mask, color: e.color })),
    index,
  );
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  parent.append(node);
  return node;
}

function drawBox(group, [x0, y0, x1, y1], sx, sy, live) {
  const rect = { x: x0 * sx, y: y0 * sy, width: (x1 - x0) * sx, height: (y1 - y0) * sy };
  svg("rect", { ...rect, class: "box-shadow" }, group);
  svg("rect", { ...rect, class: live ? "box live" : "box" }, group);
}

function drawPoint(group, [x, y, label], sx, sy) {
  const cx = x * sx;
  const cy = y * sy;
  const g = svg("g", { class: label ? "point positive" : "point negative" }, group);
  svg("circle", { cx, cy, r: 8 }, g);
  svg("path", { d: `M${cx - 4} ${cy}h8${label ? `M${cx} ${cy - 4}v8` : ""}` }, g);
}

// Clicks, the box and the keyboard cross, on their own layer, in screen
// pixels so they keep their size whatever the zoom.
function renderMarks() {
  const marks = el.marks;
  marks.replaceChildren();
  const image = state.image;
  if (!image || !image.width) return;
  const w = el.stage.clientWidth;
  const h = el.stage.clientHeight;
  marks.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const sx = w / image.width;
  const sy = h / image.height;
  const entry = state.results[state.selected];
  if (entry?.box) drawBox(marks, entry.box, sx, sy, false);
  for (const point of entry?.points ?? []) drawPoint(marks, point, sx, sy);
  const d = state.drag;
  if (d?.moved) drawBox(marks, normalizedBox(d), sx, sy, true);
  if (state.cross && el.stage.matches(":focus-visible")) {
    const [x, y] = [state.cross[0] * sx, state.cross[1] * sy];
    const g = svg("g", { class: "cross" }, marks);
    svg("path", { d: `M${x - 14} ${y}h10m8 0h10M${x} ${y - 14}v10m0 8v10`, class: "cross-shadow" }, g);
    svg("path", { d: `M${x - 14} ${y}h10m8 0h10M${x} ${y - 14}v10m0 8v10` }, g);
  }
}

function formatMs(ms) {
  return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

function fact(list, term, value) {
  const row = document.createElement("div");
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  row.append(dt, dd);
  list.append(row);
}

function button(text, onClick, attributes = {}) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  for (const [key, value] of Object.entries(attributes)) b.setAttribute(key, value);
  b.addEventListener("click", onClick);
  return b;
}

function renderResults() {
  const focused = document.activeElement?.dataset?.focusKey;
  el.results.replaceChildren();
  el.resultsEmpty.hidden = state.results.length > 0;
  state.results.forEach((entry, index) => el.results.append(resultItem(entry, index)));
  if (focused) el.results.querySelector(`[data-focus-key="${focused}"]`)?.focus();
}

function resultItem(entry, index) {
  const r = entry.result;
  const li = document.createElement("li");
  li.className = "result";
  li.dataset.testid = "result-item";
  li.dataset.resultId = r.result_id;
  li.style.setProperty("--color", entry.color);
  if (index === state.selected) li.classList.add("selected");
  const select = button("", () => {
    state.selected = index;
    render();
  }, { "aria-pressed": String(index === state.selected), "data-focus-key": `select-${index}`, class: "select" });
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = entry.label;
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = index === state.selected ? "clicks go here" : "select";
  select.append(swatch, label, tag);

  const facts = document.createElement("dl");
  facts.className = "facts";
  fact(facts, "Object", r.object_present ? "present" : "not found");
  fact(facts, "Predicted IoU", r.iou_prediction.toFixed(3));
  fact(facts, "Area", `${r.area.toLocaleString("en")} px`);
  fact(facts, "Encode", entry.cached ? "cache hit" : formatMs(entry.timings.encode));
  fact(facts, "Decode", formatMs(entry.timings.decode));
  const positive = entry.points.filter((p) => p[2] === 1).length;
  const negative = entry.points.length - positive;
  if (entry.points.length || entry.box) {
    const parts = [];
    if (entry.points.length) parts.push(`+${positive} / −${negative}`);
    if (entry.box) parts.push("box");
    fact(facts, "Clicks", parts.join(", "));
  }

  const downloads = document.createElement("div");
  downloads.className = "downloads";
  downloads.setAttribute("role", "group");
  downloads.setAttribute("aria-label", `Download the mask of ${entry.label}`);
  const anchor = li;
  const add = (text, testid, make) =>
    downloads.append(button(text, () => download(make, anchor), { "data-testid": testid, "data-focus-key": `${testid}-${index}` }));
  const stem = fileStem(entry, index);
  add("PNG", "download-png", () => [new Blob([base64ToBytes(r.png)], { type: "image/png" }), `${stem}.png`]);
  add("RLE JSON", "download-rle", () => [jsonBlob(annotation(entry, state.image, r.rle)), `${stem}-rle.json`]);
  add("Polygons", "download-polygons", () => [
    jsonBlob(annotation(entry, state.image, r.polygons)),
    `${stem}-polygons.json`,
  ]);
  if (entry.geojson) {
    add("GeoJSON", "download-geojson", () => [
      new Blob([JSON.stringify(entry.geojson)], { type: "application/geo+json" }),
      `${stem}.geojson`,
    ]);
    add("GeoTIFF", "download-geotiff", async () => [
      await callForFile(entry.replay.path, { ...entry.replay.body, outputs: ["rle"] }, "image/tiff"),
      `${stem}.tif`,
    ]);
  }

  li.append(select, facts, downloads);
  li.addEventListener("mouseenter", () => setHighlight(index));
  li.addEventListener("mouseleave", () => setHighlight(-1));
  li.addEventListener("focusin", () => setHighlight(index));
  li.addEventListener("focusout", () => setHighlight(-1));
  return li;
}

function fileStem(entry, index) {
  const base = (state.image.name || "image").replace(/\.[^.]*$/, "");
  const what = (entry.text || `result-${index + 1}`).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  return `${base}-${what}`.slice(0, 80);
}

function jsonBlob(value) {
  return new Blob([JSON.stringify(value, null, 2)], { type: "application/json" });
}

async function download(make, anchor) {
  try {
    const [blob, name] = await make();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  } catch (error) {
    showError(error, anchor);
  }
}

// ---------------------------------------------------------------------------
// Pointer and keyboard on the image
// ---------------------------------------------------------------------------

function toImage(event) {
  const rect = el.stage.getBoundingClientRect();
  const { width, height } = state.image;
  const x = Math.min(Math.max(((event.clientX - rect.left) / rect.width) * width, 0), width);
  const y = Math.min(Math.max(((event.clientY - rect.top) / rect.height) * height, 0), height);
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

function normalizedBox(d) {
  return [Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.max(d.x0, d.x1), Math.max(d.y0, d.y1)];
}

el.stage.addEventListener("contextmenu", (event) => event.preventDefault());

el.stage.addEventListener("pointerdown", (event) => {
  if (!state.image?.width || state.busy || (event.button !== 0 && event.button !== 2)) return;
  el.stage.setPointerCapture(event.pointerId);
  const [x, y] = toImage(event);
  state.drag = {
    pointer: event.pointerId,
    x0: x,
    y0: y,
    x1: x,
    y1: y,
    screenX: event.clientX,
    screenY: event.clientY,
    negative: event.button === 2 || event.altKey,
    moved: false,
  };
});

el.stage.addEventListener("pointermove", (event) => {
  const d = state.drag;
  if (!d || d.pointer !== event.pointerId) return;
  [d.x1, d.y1] = toImage(event);
  const far = Math.hypot(event.clientX - d.screenX, event.clientY - d.screenY) > DRAG_THRESHOLD_PX;
  if (far && !d.negative) d.moved = true;
  if (d.moved) renderMarks();
});

el.stage.addEventListener("pointerup", (event) => {
  const d = state.drag;
  if (!d || d.pointer !== event.pointerId) return;
  state.drag = null;
  if (d.moved) {
    renderMarks();
    prompt("box", normalizedBox(d));
  } else {
    const negative = d.negative || event.altKey || el.negativeMode.checked;
    prompt("point", [d.x0, d.y0, negative ? 0 : 1]);
  }
});

el.stage.addEventListener("pointercancel", () => {
  state.drag = null;
  renderMarks();
});

el.stage.addEventListener("focus", () => {
  if (state.image?.width && !state.cross) state.cross = [state.image.width / 2, state.image.height / 2];
  renderMarks();
});
el.stage.addEventListener("blur", renderMarks);

el.stage.addEventListener("keydown", (event) => {
  const image = state.image;
  if (!image?.width) return;
  const step = event.shiftKey ? Math.max(1, image.width / 8) : Math.max(1, image.width / 64);
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  state.cross ??= [image.width / 2, image.height / 2];
  const [x, y] = state.cross;
  if (moves[event.key]) {
    const [dx, dy] = moves[event.key];
    state.cross = [Math.min(Math.max(x + dx, 0), image.width), Math.min(Math.max(y + dy, 0), image.height)];
    renderMarks();
  } else if (event.key === "Enter" || event.key === " " || event.key === "+") {
    prompt("point", [Math.round(x * 10) / 10, Math.round(y * 10) / 10, event.shiftKey ? 0 : 1]);
  } else if (event.key === "-" || event.key === "Delete") {
    prompt("point", [Math.round(x * 10) / 10, Math.round(y * 10) / 10, 0]);
  } else {
    return;
  }
  event.preventDefault();
});

new ResizeObserver(renderMarks).observe(el.stage);

// ---------------------------------------------------------------------------
// Controls
// ---------------------------------------------------------------------------

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  segment();
});

el.text.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    segment();
  }
});

el.imageInput.addEventListener("change", () => {
  const file = el.imageInput.files[0];
  if (file) loadImage(file, file.name);
  el.imageInput.value = "";
});

for (const sample of document.querySelectorAll("[data-sample]")) {
  sample.addEventListener("click", async () => {
    clearError();
    let blob;
    try {
      const response = await fetch(sample.dataset.sample);
      if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, response.statusText);
      blob = await response.blob();
    } catch (error) {
      showError(error, el.imageSection);
      return;
    }
    el.text.value = sample.dataset.text;
    if (await loadImage(blob, sample.dataset.sample.split("/").pop())) await segment();
  });
}

el.undo.addEventListener("click", undo);
el.reset.addEventListener("click", reset);

el.opacity.addEventListener("input", () => {
  el.overlay.style.opacity = String(el.opacity.value / 100);
  el.opacityValue.textContent = `${el.opacity.value}%`;
});
el.overlay.style.opacity = String(el.opacity.value / 100);

document.addEventListener("keydown", (event) => {
  const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z" && !typing) {
    event.preventDefault();
    undo();
  }
});

// Drag and drop anywhere on the page; paste anywhere.
function firstImageFile(list) {
  return [...(list ?? [])].find((f) => f.type.startsWith("image/") || /\.tiff?$/i.test(f.name));
}

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  el.dropZone.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) el.dropZone.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  el.dropZone.classList.remove("dragging");
  const file = firstImageFile(event.dataTransfer?.files);
  if (file) loadImage(file, file.name);
  else showError("That was not an image file.", el.imageSection);
});
document.addEventListener("paste", (event) => {
  const file = firstImageFile(event.clipboardData?.files);
  if (!file) return;
  event.preventDefault();
  loadImage(file, file.name || "pasted image");
});

render();
connect();
