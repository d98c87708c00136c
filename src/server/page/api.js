// The rsam HTTP API as the page uses it. Every URL is relative to the page,
// so the page works behind a reverse proxy that adds a path prefix.

const KEY_STORAGE = "rsam.apiKey";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

function headers(extra) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", e.message);
  }
}

async function failure(response) {
  const text = await response.text();
  let error = null;
  try {
    error = JSON.parse(text).error;
  } catch {
    // Not our JSON error: a proxy's page, for instance.
  }
  return new ApiError(
    response.status,
    error?.code || `http_${response.status}`,
    error?.message || `HTTP ${response.status} ${response.statusText}`.trim(),
  );
}

// GET (no body) or POST JSON; answers the parsed JSON or throws ApiError.
export async function call(path, body) {
  const init =
    body === undefined
      ? { headers: headers({}) }
      : { method: "POST", headers: headers({ "content-type": "application/json" }), body: JSON.stringify(body) };
  const response = await send(path, init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// POSTs the image file itself (warms the feature cache).
export async function uploadImage(bytes, type) {
  const init = {
    method: "POST",
    headers: headers({ "content-type": type && type.startsWith("image/") ? type : "application/octet-stream" }),
    body: bytes,
  };
  const response = await send("v1/images", init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

// POST JSON, answered as a file (e.g. `Accept: image/tiff`).
export async function callForFile(path, body, accept) {
  const init = {
    method: "POST",
    headers: headers({ "content-type": "application/json", accept }),
    body: JSON.stringify(body),
  };
  const response = await send(path, init);
  if (!response.ok) throw await failure(response);
  return response.blob();
}

const PLAIN = {
  network: "The page cannot reach the rsam server. Is it still running?",
  unauthorized: "The server did not accept the API key.",
  unsupported_image_format: "The server cannot read this file as an image.",
  unsupported_media_type: "The server cannot read this file as an image.",
  invalid_image: "The image file is damaged or cannot be decoded.",
  image_too_large: "The image is larger than this server accepts.",
  payload_too_large: "The file is larger than this server accepts.",
  invalid_text: "The sentence cannot be used.",
  invalid_prompt: "The click or box cannot be used.",
  too_many_points: "That is more clicks than the server allows on one result: undo some or reset.",
  too_many_queries: "That is more sentences than the server takes at once.",
  no_prompt: "Type a sentence, or click on the image.",
  result_not_found: "This result has expired on the server; run the sentence again.",
  image_not_cached: "The server no longer has this image; load it again.",
  not_ready: "The model is still loading; try again in a moment.",
  overloaded: "The server is busy; try again in a moment.",
  timeout: "The server took too long to answer.",
  internal_error: "The server failed on this request.",
};

// An error in plain words, with the server's own detail after it.
export function plainWords(error) {
  if (!(error instanceof ApiError)) return `Something went wrong in the page: ${error.message}`;
  const plain = PLAIN[error.code];
  if (!plain) return `The server answered ${error.status}: ${error.message}.`;
  return `${plain} The server said: “${error.message}”.`;
}
