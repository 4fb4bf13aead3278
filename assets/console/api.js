// Talking to this node's API, and the small DOM and formatting helpers every view uses.

/** An API answer that is not a success: the server's message and Prometheus error type. */
export class ApiError extends Error {
  constructor(message, type, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

async function decode(resp) {
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ApiError(`HTTP ${resp.status}: ${text.slice(0, 300)}`, "http", resp.status);
  }
  if (body.status !== "success") {
    throw new ApiError(body.error || `HTTP ${resp.status}`, body.errorType || "error", resp.status);
  }
  return { data: body.data, warnings: body.warnings || [] };
}

/** GET `path` with `params` (an object; arrays repeat the key): `{data, warnings}`. */
export async function get(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (x !== undefined && x !== null && x !== "") q.append(k, x);
    }
  }
  const url = q.toString() ? `${path}?${q}` : path;
  const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  return decode(resp);
}

/** A PromQL request as a form POST (long expressions do not fit in a URL). */
export async function postForm(path, params) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") body.append(k, v);
  }
  const resp = await fetch(path, {
    method: "POST",
    body,
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  return decode(resp);
}

/**
 * An operator action (dedup pin and unpin): a POST with its parameters in the URL and no body,
 * which the node accepts from its own pages only (never as a form post).
 */
export async function action(path, params) {
  const resp = await fetch(`${path}?${new URLSearchParams(params)}`, {
    method: "POST",
    headers: { Accept: "application/json", "X-Requested-With": "promtier-console" },
    credentials: "same-origin",
  });
  return decode(resp);
}

/** `el("td", {class: "x"}, "text", child)`: an element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** A table with a header row and the given rows (arrays of cells or `<tr>`s). */
export function table(target, headers, rows) {
  target.replaceChildren(
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => (r instanceof Node ? r : el("tr", {}, r.map((c) => el("td", {}, c)))))),
  );
}

/** Shows `text` as an error in `target` (or hides it when empty). */
export function showError(target, text) {
  target.textContent = text || "";
  target.hidden = !text;
}

/** `name{a="1", b="2"}` for a label set (`__name__` first). */
export function seriesName(metric) {
  const name = metric.__name__ || "";
  const rest = Object.entries(metric)
    .filter(([k]) => k !== "__name__")
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`);
  return rest.length ? `${name}{${rest.join(", ")}}` : name || "{}";
}

/** Seconds as `850ms`, `12.3s`, `4m 5s`, `2h 3m`. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m ${Math.round(seconds % 60)}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

/** How long ago an RFC 3339 time was (`never` for Go's zero time). */
export function ago(rfc3339) {
  if (!rfc3339 || rfc3339.startsWith("0001-")) return "never";
  const t = Date.parse(rfc3339);
  if (Number.isNaN(t)) return rfc3339;
  return `${duration(Math.max(0, (Date.now() - t) / 1000))} ago`;
}

/** Parses a Prometheus duration (`1h30m`, `15s`, `500ms`) into seconds; `null` if invalid. */
export function parseDuration(text) {
  const s = (text || "").trim();
  if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s);
  const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  const re = /(\d+)(ms|s|m|h|d|w|y)/gy;
  let total = 0;
  let at = 0;
  let m;
  while ((m = re.exec(s)) !== null) {
    total += parseInt(m[1], 10) * units[m[2]];
    at = re.lastIndex;
  }
  return s && at === s.length ? total : null;
}
