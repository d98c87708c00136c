// Masks: COCO RLE decoding, the overlay painting and the download files.

// Decodes a COCO compressed RLE (pycocotools' string form, as rsam writes
// it: src/rle.rs) into a row-major Uint8Array of 0 / 1. The runs alternate
// background / foreground over the pixels in column-major order, starting
// with background; from the fourth run on each is stored as the difference
// to the run two places earlier. Each value is little-endian 5-bit groups,
// one character each (+48), bit 0x20 = "more groups follow", and bit 0x10
// of the last group the sign.
export function decodeRle(counts, height, width) {
  const runs = [];
  let i = 0;
  while (i < counts.length) {
    let value = 0;
    let shift = 0;
    let more = true;
    while (more) {
      if (i >= counts.length) throw new Error("the RLE ends inside a run");
      const c = counts.charCodeAt(i) - 48;
      if (c < 0 || c > 63) throw new Error(`the RLE has a character outside '0'..'o' at ${i}`);
      value += (c & 0x1f) * 2 ** shift;
      shift += 5;
      more = (c & 0x20) !== 0;
      i += 1;
      if (!more && (c & 0x10) !== 0) value -= 2 ** shift;
    }
    if (runs.length > 2) value += runs[runs.length - 2];
    if (value < 0) throw new Error("the RLE has a negative run");
    runs.push(value);
  }
  const total = height * width;
  const mask = new Uint8Array(total);
  let position = 0;
  runs.forEach((run, k) => {
    if (position + run > total) throw new Error("the RLE covers more pixels than the mask has");
    if (k % 2 === 1) {
      for (let p = position; p < position + run; p += 1) {
        const column = Math.floor(p / height);
        mask[(p - column * height) * width + column] = 1;
      }
    }
    position += run;
  });
  if (position !== total) throw new Error(`the RLE covers ${position} pixels, the mask has ${total}`);
  return mask;
}

// Colours of the results, in order: distinct on green, brown and blue scenes.
export const COLORS = ["#ff3d71", "#22c3ff", "#ffd400", "#8cff4f", "#c084fc", "#ff8a3d", "#00e5b0", "#ff66d9"];

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [n >> 16, (n >> 8) & 255, n & 255];
}

// Paints the masks at the image's own resolution: transparent where no
// mask is, each result in its colour (later results on top), its edge
// opaque and its inside translucent. With `highlight` set, the other
// results are faded so the highlighted one stands out.
export function paintOverlay(canvas, width, height, layers, highlight = -1) {
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  // Whole frames are written with putImageData: keep the canvas in memory.
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const image = ctx.createImageData(width, height);
  const data = image.data;
  layers.forEach((layer, index) => {
    const [r, g, b] = rgb(layer.color);
    const faded = highlight >= 0 && index !== highlight;
    const inside = faded ? 50 : 150;
    const edge = faded ? 90 : 255;
    const m = layer.mask;
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const i = y * width + x;
        if (!m[i]) continue;
        const onEdge =
          x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !m[i - 1] || !m[i + 1] || !m[i - width] || !m[i + width];
        const o = i * 4;
        data[o] = r;
        data[o + 1] = g;
        data[o + 2] = b;
        data[o + 3] = onEdge ? edge : inside;
      }
    }
  });
  ctx.putImageData(image, 0, 0);
}

export function base64ToBytes(b64) {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// A result as a COCO-style annotation: the mask as compressed RLE, or as
// polygons (flat [x0, y0, x1, y1, ...] lists, what the API returns).
export function annotation(entry, image, segmentation) {
  const r = entry.result;
  return {
    image: { image_id: image.id, file_name: image.name, width: image.width, height: image.height },
    annotation: {
      result_id: r.result_id,
      text: entry.text,
      points: entry.points,
      box: entry.box,
      segmentation,
      area: r.area,
      bbox: r.bbox,
      iou_prediction: r.iou_prediction,
      object_score_logit: r.object_score_logit,
      object_present: r.object_present,
    },
  };
}

// The GeoJSON of one result when the server answered with georeferenced
// output: a `geojson` member on the result, or a FeatureCollection on the
// response with one feature per result in order. Null when neither.
export function geojsonOf(response, index) {
  const own = response.results[index]?.geojson;
  if (own) return own;
  const all = response.geojson;
  if (!all || !Array.isArray(all.features) || !all.features[index]) return null;
  return { ...all, features: [all.features[index]] };
}
