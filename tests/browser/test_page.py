"""The web page at `/`, driven in a real browser (Debian's Chromium through
Playwright) against a real `rsam serve` on the bundled demo model.

Three runs, each in a fresh browser context:
  1. 1280 x 800, no API key, straight to rsam: no console error or warning;
  2. 390 x 844 (a phone, touch), behind nginx at the path prefix /rsam/,
     rsam with --api-key: the page asks for the key (a wrong one first);
  3. 1280 x 800, behind the prefix, with the key.
In each: give a synth scene (file picker, paste, drop), type two sentences,
segment, and check that the overlay's pixels are exactly the API's masks
(the page draws from the COCO RLE it receives; the test decodes the PNGs of
the same answers, and of an independent API call); a negative click (a tap
with the "clicks remove" switch on the phone), a box and a keyboard point
change the mask exactly as /v1/refine answers; undo, reset, Ctrl+Z, hover
highlight, the opacity slider by keyboard, the downloads (PNG, RLE JSON,
polygons; no GeoJSON / GeoTIFF for a plain JPEG), a sample scene in one
click, a TIFF (which Chromium cannot show) drawn on a blank canvas, an API
error shown in plain words next to its cause, every request under the prefix. Runs 1 and 2 write the README's screenshots
(--screenshots DIR).

Usage: python tests/browser/test_page.py --rsam target/debug/rsam [--screenshots docs]
"""

import argparse
import base64
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
API_KEY = "page-test-key-7f3a"
PREFIX = "/rsam/"
# A synth scene that is not one of the page's samples, and two sentences
# the demo model finds in it.
SYNTH_SEED, SYNTH_IMAGE = 23, "synth_000006.jpg"
SENTENCES = ["the tank at the top", "the red bridge to the right of the white storage tank"]
UNAUTHORIZED_CONSOLE = "the server responded with a status of 401"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout_s, process=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s")


class Processes:
    """Starts processes and stops every one of them on exit."""

    def __init__(self, logs):
        self.logs = logs
        self.running = []

    def start(self, name, args, **kwargs):
        log = open(self.logs / f"{name}.log", "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        self.running.append((name, p))
        return p

    def stop(self):
        for _, p in reversed(self.running):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for name, p in self.running:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def start_rsam(procs, rsam, api_key=None):
    port = free_port()
    args = [rsam, "serve", "--addr", f"127.0.0.1:{port}"]
    if api_key:
        args += ["--api-key", api_key]
    p = procs.start(f"rsam-{port}", args, cwd=ROOT)
    wait_http(f"http://127.0.0.1:{port}/readyz", 120, p)
    return f"http://127.0.0.1:{port}"


def start_nginx(procs, tmp, upstream):
    """Debian's nginx in the foreground, own config and temp paths, serving
    rsam at the path prefix /rsam/."""
    port = free_port()
    conf = tmp / "nginx.conf"
    # Workers run as this user (when it is root, nginx would otherwise pick
    # `nobody`, which cannot write the temp folders).
    user = pwd.getpwuid(os.getuid()).pw_name
    conf.write_text(f"""
daemon off;
user {user};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  client_max_body_size 64m;
  client_body_buffer_size 1m;
  server {{
    listen 127.0.0.1:{port};
    location {PREFIX} {{ proxy_pass {upstream}/; }}
  }}
}}
""")
    p = procs.start("nginx", ["nginx", "-p", str(tmp), "-e", f"{tmp}/nginx-error.log", "-c", str(conf)])
    url = f"http://127.0.0.1:{port}{PREFIX}"
    wait_http(url + "healthz", 20, p)
    return url


# ---------------------------------------------------------------------------
# The API, called directly, and masks
# ---------------------------------------------------------------------------


def api(base, path, body, key=None):
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(base + path, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def png_mask(b64):
    """The API's PNG (0 / 255) as row-major 0 / 1 bytes."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.mode == "L", image.mode
    return image.size, bytes(1 if v else 0 for v in image.tobytes())


def masks_of(response):
    return [png_mask(r["png"])[1] for r in response["results"]]


def rgb(hex_color):
    n = int(hex_color[1:], 16)
    return (n >> 16, (n >> 8) & 255, n & 255)


def nearest(pixel, palette):
    return min(range(len(palette)), key=lambda k: sum((a - b) ** 2 for a, b in zip(pixel, palette[k])))


def check_overlay(page, masks, colors, what):
    """The overlay canvas is the masks: in the result's colour (later
    results on top) where a mask is, fully transparent elsewhere. The canvas
    keeps premultiplied alpha, so a translucent pixel reads back with its
    colour rounded: it must be nearest to its result's colour."""
    overlay = page.evaluate(
        """() => {
          const c = document.querySelector('[data-testid=mask-overlay]');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let s = ''; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
          return {w: c.width, h: c.height, data: btoa(s)};
        }"""
    )
    data = base64.b64decode(overlay["data"])
    n = len(masks[0]) if masks else overlay["w"] * overlay["h"]
    assert overlay["w"] * overlay["h"] == n, f"{what}: overlay {overlay['w']}x{overlay['h']} for {n} mask pixels"
    palette = [rgb(c) for c in colors]
    wrong = 0
    for i in range(n):
        top = max((k for k, m in enumerate(masks) if m[i]), default=-1)
        r, g, b, a = data[4 * i : 4 * i + 4]
        if top < 0:
            wrong += a != 0
        else:
            wrong += a == 0 or nearest((r, g, b), palette) != top % len(palette)
    assert wrong == 0, f"{what}: {wrong} overlay pixels differ from the API's masks"
    return data


def inside_point(mask, size):
    """A mask pixel near the middle of the mask, in image coordinates."""
    w, h = size
    pixels = [(i % w, i // w) for i, v in enumerate(mask) if v]
    assert pixels, "empty mask"
    cx = sum(x for x, _ in pixels) / len(pixels)
    cy = sum(y for _, y in pixels) / len(pixels)
    x, y = min(pixels, key=lambda p: (p[0] - cx) ** 2 + (p[1] - cy) ** 2)
    return x + 0.5, y + 0.5


def bbox_of(mask, size):
    w, _ = size
    xs = [i % w for i, v in enumerate(mask) if v]
    ys = [i // w for i, v in enumerate(mask) if v]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


# ---------------------------------------------------------------------------
# One run of the page
# ---------------------------------------------------------------------------


class Run:
    def __init__(self, browser, page_url, api_url, key, viewport, phone, scene, name):
        self.page_url, self.api_url, self.key, self.name = page_url, api_url, key, name
        options = {"viewport": viewport, "accept_downloads": True}
        if phone:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=1)
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.page.set_default_timeout(30000)
        self.console, self.requests = [], []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.console.append(m.text))
        self.page.on("pageerror", lambda e: self.console.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.scene = scene
        self.scene_b64 = base64.b64encode(scene.read_bytes()).decode()

    def log(self, message):
        print(f"  [{self.name}] {message}", flush=True)

    def results(self):
        return self.page.locator("[data-testid=result-item]")

    def stage_point(self, x, y, size):
        """Viewport coordinates of image pixel (x, y), the stage in view."""
        self.page.locator("#stage").scroll_into_view_if_needed()
        box = self.page.locator("#stage").bounding_box()
        return box["x"] + x / size[0] * box["width"], box["y"] + y / size[1] * box["height"]

    def expect_api(self, path):
        return self.page.expect_response(lambda r: r.url.endswith(path) and r.request.method == "POST")

    def wait_for_result(self, result_id):
        self.page.locator(f"[data-result-id='{result_id}']").wait_for()

    def open(self):
        page = self.page
        page.goto(self.page_url)
        if self.key:
            dialog = page.locator("#key-dialog")
            dialog.wait_for(state="visible")
            assert "API key" in page.locator("#model-status").inner_text()
            # A wrong key first: the dialog comes back and says so.
            page.get_by_role("textbox", name="API key").fill("not-the-key")
            page.locator("#key-submit").click()
            page.locator("#key-error").wait_for(state="visible")
            assert "did not accept" in page.locator("#key-error").inner_text()
            page.get_by_role("textbox", name="API key").fill(self.key)
            page.locator("#key-submit").click()
            dialog.wait_for(state="hidden")
            stored = page.evaluate("sessionStorage.getItem('rsam.apiKey')")
            assert stored == self.key, stored
        # Locator waits, not wait_for_function: the page's CSP forbids eval.
        page.locator("#model-status", has_text="rsam-demo").wait_for()
        self.colors = page.evaluate("import('./assets/masks.js').then(m => m.COLORS)")
        self.log(f"loaded; model: {page.locator('#model-status').inner_text()}")

    def check_rle_decoder_errors(self):
        """The page's RLE decoder refuses what pycocotools would misread."""
        messages = self.page.evaluate(
            """() => import('./assets/masks.js').then(m => [
                ['', 2, 2], ['z', 1, 1], ['P', 1, 1], ['4', 1, 1], ['02', 1, 1], ['0?', 1, 1],
              ].map(([counts, h, w]) => { try { m.decodeRle(counts, h, w); return null; } catch (e) { return e.message; } }))"""
        )
        assert all(messages), f"malformed RLE accepted: {messages}"
        ok = self.page.evaluate("import('./assets/masks.js').then(m => Array.from(m.decodeRle('0111', 2, 2)))")
        # Runs 0, 1, 1, 1 + 1 (the fourth is delta-coded against the second)
        # over a 2x2 mask in column order: (0,0) on, (0,1) off, (1,0) and
        # (1,1) on; row-major 1, 1, 0, 1.
        assert ok == [1, 1, 0, 1], ok
        self.log(f"RLE decoder: {len(messages)} malformed strings refused")

    def check_labels(self):
        unlabelled = self.page.evaluate(
            """() => [...document.querySelectorAll('input, textarea, button, select')]
                 .filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
                 .map(e => e.outerHTML)"""
        )
        assert not unlabelled, f"controls without a label: {unlabelled}"

    def give_image(self, via):
        """The scene through the file picker, dropped on the page, or pasted."""
        if via == "picker":
            self.page.locator("[data-testid=image-input]").set_input_files(str(self.scene))
            return
        self.page.evaluate(
            """([b64, name, via]) => {
              const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
              const data = new DataTransfer();
              data.items.add(new File([bytes], name, {type: 'image/jpeg'}));
              if (via === 'drop') {
                const zone = document.getElementById('drop-zone');
                zone.dispatchEvent(new DragEvent('dragover', {bubbles: true, cancelable: true, dataTransfer: data}));
                zone.dispatchEvent(new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: data}));
              } else {
                document.body.dispatchEvent(new ClipboardEvent('paste', {bubbles: true, cancelable: true, clipboardData: data}));
              }
            }""",
            [self.scene_b64, self.scene.name, via],
        )

    def segment(self, via):
        page = self.page
        self.give_image(via)
        page.locator("#image-info", has_text="px,").wait_for()
        page.locator("[data-testid=text-input]").fill("\n".join(SENTENCES))
        with self.expect_api("v1/segment") as answer:
            page.locator("[data-testid=segment-button]").click()
        response = answer.value.json()
        assert answer.value.status == 200, response
        for r in response["results"]:
            self.wait_for_result(r["result_id"])
        assert self.results().count() == len(SENTENCES)
        self.size = (response["width"], response["height"])
        masks = masks_of(response)
        # The same request straight to the API gives the same masks.
        direct = api(
            self.api_url,
            "v1/segment",
            {"image": self.scene_b64, "queries": [{"text": t} for t in SENTENCES], "outputs": ["png"]},
            self.key,
        )
        assert masks_of(direct) == masks, "the page's masks differ from a direct API call's"
        assert all(any(m) for m in masks), "the demo model found nothing: pick other sentences"
        check_overlay(self.page, masks, self.colors, "after segment")
        self.log(f"image by {via}, segment: overlay == API masks ({[sum(m) for m in masks]} px)")
        self.masks, self.responses = masks, response["results"]

    def check_hover(self):
        before = check_overlay(self.page, self.masks, self.colors, "before hover")
        self.results().nth(1).hover()
        after = check_overlay(self.page, self.masks, self.colors, "while hovering result 2")
        only_first = [i for i in range(len(self.masks[0])) if self.masks[0][i] and not self.masks[1][i]]
        assert all(after[4 * i + 3] < before[4 * i + 3] for i in only_first), "hovering result 2 did not fade result 1"
        self.page.mouse.move(1, 1)
        self.page.locator("h1").hover()
        self.log("hover highlight: the other mask fades")

    def refine(self, index, action, what, must_change=False):
        """Runs `action` (a click, a drag, keys), which must send one
        /v1/refine for result `index`; checks the answer against the API and
        the overlay against the answer."""
        with self.expect_api("v1/refine") as answer:
            action()
        sent = answer.value.request.post_data_json
        response = answer.value.json()
        assert answer.value.status == 200, response
        assert sent["result_id"] == self.responses[index]["result_id"], "refine did not chain on the selected result"
        new_id = response["results"][0]["result_id"]
        self.wait_for_result(new_id)
        mask = masks_of(response)[0]
        # The same refine straight to the API answers the same mask.
        body = {k: v for k, v in sent.items() if k != "outputs"} | {"outputs": ["png"]}
        assert masks_of(api(self.api_url, "v1/refine", body, self.key))[0] == mask, f"{what}: differs from the API"
        if must_change:
            assert mask != self.masks[index], f"{what}: the mask did not change"
        self.masks[index], self.responses[index] = mask, response["results"][0]
        check_overlay(self.page, self.masks, self.colors, f"after {what}")
        self.log(f"{what}: sent {json.dumps({k: v for k, v in sent.items() if k in ('points', 'box')})}, "
                 f"overlay == /v1/refine's mask ({sum(mask)} px)")
        return sent

    def select(self, index):
        self.results().nth(index).locator("button.select").click()
        assert self.results().nth(index).locator("button.select").get_attribute("aria-pressed") == "true"

    def negative_click(self, phone):
        self.select(0)
        x, y = inside_point(self.masks[0], self.size)
        if phone:
            # Touch: the "clicks remove" switch, then a tap.
            self.page.get_by_label("Clicks remove (touch screens)").check()
        sx, sy = self.stage_point(x, y, self.size)
        if phone:
            action = lambda: self.page.touchscreen.tap(sx, sy)
        else:
            action = lambda: self.page.mouse.click(sx, sy, button="right")
        sent = self.refine(0, action, "negative click", must_change=True)
        px, py, label = sent["points"][0]
        assert label == 0 and abs(px - x) < 1.5 and abs(py - y) < 1.5, sent
        if phone:
            self.page.get_by_label("Clicks remove (touch screens)").uncheck()
        assert self.page.locator("#marks .point.negative").count() == 1

    def box(self):
        self.select(1)
        x0, y0, x1, y1 = bbox_of(self.masks[1], self.size)
        w, h = self.size
        a = self.stage_point(max(x0 - 6, 0), max(y0 - 6, 0), self.size)
        b = self.stage_point(min(x1 + 6, w), min(y1 + 6, h), self.size)

        def drag():
            self.page.mouse.move(*a)
            self.page.mouse.down()
            self.page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
            self.page.mouse.move(*b, steps=4)
            self.page.mouse.up()

        sent = self.refine(1, drag, "box", must_change=True)
        assert "box" in sent and "points" not in sent, sent
        assert self.page.locator("#marks rect.box").count() == 1

    def keyboard_point(self):
        self.select(0)
        self.page.locator("#stage").focus()
        self.page.keyboard.press("ArrowUp")
        x, y = inside_point(self.masks[0], self.size)
        sent = self.refine(0, lambda: self.page.keyboard.press("Enter"), "keyboard point")
        assert sent["points"][0][2] == 1, sent

    def undo_reset(self):
        before_undo = [bytes(m) for m in self.masks]
        with self.expect_api("v1/refine") as answer:
            # A positive click on result 1 whose answer the undo then drops.
            self.select(1)
            x, y = inside_point(self.masks[1], self.size)
            self.page.mouse.click(*self.stage_point(x, y, self.size))
        self.wait_for_result(answer.value.json()["results"][0]["result_id"])
        self.page.get_by_role("button", name="Undo").click()
        self.wait_for_result(self.responses[1]["result_id"])
        check_overlay(self.page, before_undo, self.colors, "after undo")
        self.page.get_by_role("button", name="Reset").click()
        assert self.results().count() == 0
        check_overlay(self.page, [], self.colors, "after reset")
        self.page.keyboard.press("Control+z")
        self.wait_for_result(self.responses[1]["result_id"])
        check_overlay(self.page, before_undo, self.colors, "after undoing the reset")
        self.log("undo, reset, Ctrl+Z: the overlay follows")

    def opacity(self):
        slider = self.page.get_by_label("Mask opacity")
        slider.focus()
        for _ in range(10):
            self.page.keyboard.press("ArrowLeft")
        assert self.page.locator("#opacity-value").inner_text() == "30%"
        assert self.page.locator("[data-testid=mask-overlay]").evaluate("c => c.style.opacity") == "0.3"
        for _ in range(10):
            self.page.keyboard.press("ArrowRight")
        self.log("opacity slider by keyboard: 30% -> canvas opacity 0.3")

    def downloads(self, tmp):
        item = self.results().nth(0)
        result = self.responses[0]
        saved = {}
        for testid in ("download-png", "download-rle", "download-polygons"):
            with self.page.expect_download() as d:
                item.locator(f"[data-testid={testid}]").click()
            path = tmp / f"{self.name}-{d.value.suggested_filename}"
            d.value.save_as(path)
            saved[testid] = path
        assert png_mask(base64.b64encode(saved["download-png"].read_bytes()))[1] == self.masks[0]
        rle = json.loads(saved["download-rle"].read_text())
        assert rle["annotation"]["segmentation"]["counts"] == result["rle"]["counts"]
        assert rle["annotation"]["result_id"] == result["result_id"]
        polygons = json.loads(saved["download-polygons"].read_text())
        assert polygons["annotation"]["segmentation"] == result["polygons"] and result["polygons"]
        # A plain JPEG is not georeferenced: no GeoJSON / GeoTIFF buttons.
        assert item.locator("[data-testid=download-geojson], [data-testid=download-geotiff]").count() == 0
        self.log(f"downloads: {', '.join(p.name for p in saved.values())} match the API's answer")

    def error_in_plain_words(self, tmp):
        bad = tmp / "notes.png"
        bad.write_bytes(b"these are notes, not an image")
        self.page.locator("[data-testid=image-input]").set_input_files(str(bad))
        error = self.page.locator("#image-section [data-testid=error]")
        error.wait_for(state="visible")
        text = error.inner_text()
        assert "cannot read this file as an image" in text, text
        self.log(f"error shown next to the image input: {text!r}")
        return "status of 415"

    def sentence_error_in_plain_words(self):
        """A sentence over the model's token limit: the API's 422 is shown
        next to the sentence box, and the masks stay."""
        before = self.results().count()
        self.page.locator("[data-testid=text-input]").fill("the ship " * 200)
        self.page.locator("[data-testid=segment-button]").click()
        error = self.page.locator("#text-section [data-testid=error]")
        error.wait_for(state="visible")
        text = error.inner_text()
        assert "The sentence cannot be used" in text and "tokens" in text, text
        assert self.results().count() == before
        self.log(f"error shown next to the sentence: {text!r}")
        return "status of 422"

    def tiff_on_a_blank_canvas(self, tmp):
        """Chromium cannot show a TIFF (a GeoTIFF, say) but rsam reads it: the
        page draws the masks on a blank canvas of the server's size."""
        tiff = tmp / "scene.tif"
        Image.open(self.scene).save(tiff)
        self.page.locator("[data-testid=image-input]").set_input_files(str(tiff))
        self.page.locator("#image-info", has_text="cannot show").wait_for()
        assert "blank" in self.page.locator("#stage").get_attribute("class")
        self.page.locator("[data-testid=text-input]").fill(SENTENCES[0])
        with self.expect_api("v1/segment") as answer:
            self.page.locator("[data-testid=segment-button]").click()
        response = answer.value.json()
        self.wait_for_result(response["results"][0]["result_id"])
        check_overlay(self.page, masks_of(response), self.colors, "TIFF")
        self.log("a TIFF the browser cannot show: masks drawn on a blank canvas, == the API's")

    def check_console(self, allowed):
        unexpected = [m for m in self.console if not any(a in m for a in allowed)]
        assert not unexpected, f"console errors: {unexpected}"

    def check_requests_relative(self, prefix_url):
        outside = [u for u in self.requests if u.startswith("http") and not u.startswith(prefix_url)]
        assert not outside, f"requests outside {prefix_url}: {outside}"
        self.log(f"all {len(self.requests)} requests stayed under {prefix_url}")


def sample_one_click(run, phone, screenshot):
    """A first visit: one click on a sample scene gives masks; a click on
    the ship then refines it. Writes the README's screenshot of this run."""
    page = run.page
    page.evaluate("window.scrollTo(0, 0)")
    with run.expect_api("v1/segment") as answer:
        page.get_by_role("button", name="Harbour").click()
    response = answer.value.json()
    for r in response["results"]:
        run.wait_for_result(r["result_id"])
    run.size = (response["width"], response["height"])
    run.masks, run.responses = masks_of(response), response["results"]
    check_overlay(page, run.masks, run.colors, "sample scene")
    run.log(f"sample 'Harbour' in one click: {len(run.masks)} masks drawn")
    x, y = inside_point(run.masks[0], run.size)
    sx, sy = run.stage_point(x, y - 4, run.size)
    click = (lambda: page.touchscreen.tap(sx, sy)) if phone else (lambda: page.mouse.click(sx, sy))
    run.refine(0, click, "a positive click on the sample")
    if screenshot:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.evaluate("document.querySelector('.panel').scrollTop = 0; window.scrollTo(0, 0)")
        page.mouse.move(0, 0)
        shot = Image.open(io.BytesIO(page.screenshot(full_page=phone))).convert("RGB")
        # 256 colours without dithering: a third of the size, and the UI's
        # flat colours stay exact.
        shot.quantize(256, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(screenshot, optimize=True)
        run.log(f"screenshot {screenshot} ({screenshot.stat().st_size // 1024} KiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rsam", required=True)
    parser.add_argument("--screenshots", help="folder for the README's screenshots")
    args = parser.parse_args()
    rsam = str(Path(args.rsam).resolve())
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rsam-page-"))
    procs = Processes(tmp)
    try:
        subprocess.run(
            [rsam, "synth", "--out", str(tmp / "synth"), "--images", "8", "--size", "256", "--seed", str(SYNTH_SEED)],
            check=True, capture_output=True,
        )
        scene = tmp / "synth" / "JPEGImages" / SYNTH_IMAGE
        open_url = start_rsam(procs, rsam)
        keyed_url = start_rsam(procs, rsam, API_KEY)
        prefixed_url = start_nginx(procs, tmp, keyed_url)
        shots = Path(args.screenshots) if args.screenshots else None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            desktop, phone_size = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
            runs = [
                ("desktop", open_url + "/", open_url + "/", None, desktop, False, "picker", "page-desktop.png"),
                ("phone+prefix+key", prefixed_url, keyed_url + "/", API_KEY, phone_size, True, "paste", "page-phone.png"),
                ("desktop+prefix+key", prefixed_url, keyed_url + "/", API_KEY, desktop, False, "drop", None),
            ]
            for name, page_url, api_url, key, viewport, phone, via, shot in runs:
                print(f"run {name}: {page_url} at {viewport['width']}x{viewport['height']}", flush=True)
                run = Run(browser, page_url, api_url, key, viewport, phone, scene, name)
                run.open()
                run.check_labels()
                run.check_rle_decoder_errors()
                run.segment(via)
                if not phone:
                    run.check_hover()
                run.negative_click(phone)
                if not phone:
                    run.box()
                    run.keyboard_point()
                    run.undo_reset()
                    run.opacity()
                run.downloads(tmp)
                screenshot = shots / shot if shots and shot else None
                sample_one_click(run, phone, screenshot)
                if name == "desktop":
                    run.tiff_on_a_blank_canvas(tmp)
                allowed = [run.sentence_error_in_plain_words(), run.error_in_plain_words(tmp)]
                if key:
                    allowed.append(UNAUTHORIZED_CONSOLE)
                    # The first GET v1/model, then the wrong key's.
                    assert sum(UNAUTHORIZED_CONSOLE in m for m in run.console) == 2, run.console
                run.check_console(allowed)
                if page_url.startswith(prefixed_url):
                    run.check_requests_relative(prefixed_url)
                run.context.close()
            browser.close()
        print(f"browser test: all passed in {time.monotonic() - started:.0f} s")
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
