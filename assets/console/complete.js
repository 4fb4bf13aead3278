// Autocomplete for the PromQL box: metric names, label names and label values from this node's
// API (cached for a minute), plus PromQL's functions and keywords. The box is an ARIA combobox
// whose suggestions are a listbox under it.

import { get } from "./api.js";

const FUNCTIONS = [
  "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max",
  "clamp_min", "count_over_time", "day_of_month", "day_of_week", "delta", "deriv", "exp", "floor",
  "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
  "label_replace", "last_over_time", "ln", "log2", "log10", "max_over_time", "min_over_time",
  "minute", "month", "predict_linear", "present_over_time", "quantile_over_time", "rate", "resets",
  "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
  "sum_over_time", "time", "timestamp", "vector", "year",
];
const AGGREGATIONS = [
  "sum", "avg", "min", "max", "count", "count_values", "group", "stddev", "stdvar", "topk",
  "bottomk", "quantile",
];
const KEYWORDS = ["by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"];
const MAX_SHOWN = 30;
const CACHE_MS = 60_000;

/** Lists fetched from the API, each kept for a minute. */
class Lists {
  constructor() {
    this.cache = new Map();
  }

  async fetch(key, path, params) {
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_MS) return hit.values;
    try {
      const { data } = await get(path, params);
      this.cache.set(key, { at: Date.now(), values: data || [] });
      return data || [];
    } catch {
      return hit ? hit.values : [];
    }
  }

  metrics() {
    return this.fetch("metrics", "/api/v1/label/__name__/values");
  }

  labels(metric) {
    return this.fetch(`labels:${metric}`, "/api/v1/labels", metric ? { "match[]": metric } : {});
  }

  values(label, metric) {
    const path = `/api/v1/label/${encodeURIComponent(label)}/values`;
    return this.fetch(`values:${label}:${metric}`, path, metric ? { "match[]": metric } : {});
  }
}

/**
 * What is being typed at the end of `before` (the text left of the cursor): a label value, a
 * label name, a metric or function name, or nothing to complete.
 */
export function context(before) {
  const open = before.lastIndexOf("{");
  const inBraces = open > before.lastIndexOf("}");
  const metricBefore = (at) => (before.slice(0, at).match(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/) || [])[1] || "";
  if (inBraces) {
    const value = before.match(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/);
    if (value) return { kind: "value", label: value[1], prefix: value[3], metric: metricBefore(open) };
    const inner = before.slice(open + 1);
    // Inside a finished string, or right after an operator: nothing to say.
    if ((inner.match(/"/g) || []).length % 2 === 1) return null;
    const name = inner.match(/(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/);
    if (name) return { kind: "label", prefix: name[1] || "", metric: metricBefore(open) };
    return null;
  }
  if (before.lastIndexOf("[") > before.lastIndexOf("]")) return null;
  if ((before.match(/"/g) || []).length % 2 === 1) return null;
  const grouping = before.match(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*,)?\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/);
  if (grouping) return { kind: "label", prefix: grouping[3] || "", metric: "" };
  const word = before.match(/(^|[^a-zA-Z0-9_:.])([a-zA-Z_:][a-zA-Z0-9_:]*)$/);
  if (word) return { kind: "name", prefix: word[2] };
  return null;
}

/** Candidates starting with `prefix` first, then those containing it; at most `MAX_SHOWN`. */
function rank(items, prefix) {
  const p = prefix.toLowerCase();
  const starts = [];
  const contains = [];
  for (const it of items) {
    const t = it.text.toLowerCase();
    if (t === p) continue;
    if (t.startsWith(p)) starts.push(it);
    else if (p && t.includes(p)) contains.push(it);
    if (starts.length >= MAX_SHOWN) break;
  }
  return starts.concat(contains).slice(0, MAX_SHOWN);
}

/** Wires autocomplete to `box` (a textarea) with suggestions in `listbox`; `submit` runs the query. */
export function attach(box, listbox, submit) {
  const lists = new Lists();
  let shown = [];
  let active = -1;
  let ctx = null;
  let seq = 0;

  const close = () => {
    listbox.hidden = true;
    listbox.replaceChildren();
    shown = [];
    active = -1;
    box.setAttribute("aria-expanded", "false");
    box.removeAttribute("aria-activedescendant");
  };

  const highlight = (i) => {
    active = i;
    for (const [j, li] of [...listbox.children].entries()) li.setAttribute("aria-selected", String(j === i));
    if (i >= 0) {
      box.setAttribute("aria-activedescendant", `complete-${i}`);
      listbox.children[i].scrollIntoView({ block: "nearest" });
    } else {
      box.removeAttribute("aria-activedescendant");
    }
  };

  const accept = (i) => {
    const item = shown[i];
    if (!item || !ctx) return;
    const pos = box.selectionStart;
    const start = pos - ctx.prefix.length;
    let text = item.insert;
    let after = box.value.slice(pos);
    if (ctx.kind === "value" && !after.startsWith('"')) text += '"';
    box.value = box.value.slice(0, start) + text + after;
    const caret = start + text.length - (item.back || 0);
    box.setSelectionRange(caret, caret);
    close();
    box.focus();
  };

  const show = (items) => {
    shown = items;
    if (!items.length) return close();
    listbox.replaceChildren(
      ...items.map((it, i) => {
        const li = document.createElement("li");
        li.id = `complete-${i}`;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.kind = it.kind;
        const kind = document.createElement("span");
        kind.className = "kind";
        kind.textContent = it.kind;
        li.append(it.text, kind);
        // mousedown, not click: the box would lose focus (and the list close) first.
        li.addEventListener("mousedown", (e) => {
          e.preventDefault();
          accept(i);
        });
        return li;
      }),
    );
    listbox.hidden = false;
    box.setAttribute("aria-expanded", "true");
    highlight(-1);
  };

  const update = async () => {
    const mine = ++seq;
    ctx = context(box.value.slice(0, box.selectionStart));
    if (!ctx || (ctx.kind === "name" && ctx.prefix.length < 1)) return close();
    let items;
    if (ctx.kind === "value") {
      const values = await lists.values(ctx.label, ctx.metric);
      const esc = (v) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
      items = values.map((v) => ({ text: v, insert: esc(v), kind: "value" }));
    } else if (ctx.kind === "label") {
      const labels = await lists.labels(ctx.metric);
      items = labels.filter((l) => l !== "__name__").map((l) => ({ text: l, insert: l, kind: "label" }));
    } else {
      const metrics = await lists.metrics();
      items = [
        ...metrics.map((m) => ({ text: m, insert: m, kind: "metric" })),
        ...FUNCTIONS.map((f) => ({ text: f, insert: `${f}()`, back: 1, kind: "function" })),
        ...AGGREGATIONS.map((a) => ({ text: a, insert: `${a}()`, back: 1, kind: "aggregation" })),
        ...KEYWORDS.map((k) => ({ text: k, insert: k, kind: "keyword" })),
      ];
    }
    // A newer keystroke has already asked again.
    if (mine !== seq) return;
    show(rank(items, ctx.prefix));
  };

  box.addEventListener("input", update);
  box.addEventListener("blur", () => setTimeout(close, 150));
  box.addEventListener("keydown", (e) => {
    const open = !listbox.hidden && shown.length > 0;
    if (open && e.key === "ArrowDown") {
      e.preventDefault();
      highlight((active + 1) % shown.length);
    } else if (open && e.key === "ArrowUp") {
      e.preventDefault();
      highlight(active <= 0 ? shown.length - 1 : active - 1);
    } else if (open && (e.key === "Tab" || (e.key === "Enter" && active >= 0))) {
      e.preventDefault();
      accept(active >= 0 ? active : 0);
    } else if (open && e.key === "Escape") {
      e.preventDefault();
      close();
    } else if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      close();
      submit();
    }
  });
}
