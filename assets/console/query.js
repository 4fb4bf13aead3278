// The Query view: the PromQL box with its controls (range, end, step, dedup), history kept in
// localStorage, and the result as a table (an instant query at the end time) or a graph (a range
// query). Only the visible view's query runs; switching views runs the other one if it is stale.
// The form's state is kept in the URL (`#query?expr=…`) so a query can be linked.

import { postForm, el, table, showError, seriesName, parseDuration } from "./api.js";
import { attach } from "./complete.js";
import { draw } from "./graph.js";

const HISTORY_KEY = "promtier.console.history";
const HISTORY_MAX = 30;
const TABLE_ROWS = 1000;

const $ = (id) => document.getElementById(id);
let tab = "table";
/** The parameters each view last ran with, to skip running it again. */
const lastRun = { table: "", graph: "" };

function history() {
  try {
    const h = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(h) ? h.filter((x) => typeof x === "string") : [];
  } catch {
    return [];
  }
}

function remember(expr) {
  const h = [expr, ...history().filter((x) => x !== expr)].slice(0, HISTORY_MAX);
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(h));
  } catch {
    // Storage full or disabled: history is a convenience.
  }
  renderHistory();
}

function renderHistory() {
  const h = history();
  $("history-list").replaceChildren(
    ...h.map((expr) =>
      el("li", {}, el("button", { type: "button", class: "link", onclick: () => {
        $("expr").value = expr;
        run();
      } }, expr)),
    ),
  );
  $("history").querySelector("summary").textContent = `History (${h.length})`;
}

/** The form's parameters; throws an Error naming a bad field. */
function params() {
  const expr = $("expr").value.trim();
  if (!expr) throw new Error("Enter an expression.");
  const range = parseDuration($("range").value);
  if (!range || range <= 0) throw new Error(`Range ${JSON.stringify($("range").value)} is not a duration (e.g. 15m).`);
  let end = Date.now() / 1000;
  if ($("end").value) {
    const t = Date.parse($("end").value);
    if (Number.isNaN(t)) throw new Error("End is not a time.");
    end = t / 1000;
  }
  end = Math.floor(end);
  let step = Math.max(1, Math.round(range / 250));
  if ($("step").value.trim()) {
    step = parseDuration($("step").value);
    if (!step || step <= 0) throw new Error(`Step ${JSON.stringify($("step").value)} is not a duration.`);
  }
  const dedup = $("dedup-wrap").hidden || $("dedup-on").checked ? undefined : "false";
  return { expr, range, end, step, dedup };
}

function saveToUrl(p) {
  const q = new URLSearchParams({ expr: p.expr, range: $("range").value, tab });
  if ($("end").value) q.set("end", $("end").value);
  if ($("step").value) q.set("step", $("step").value);
  if (p.dedup) q.set("dedup", "false");
  window.history.replaceState(null, "", `#query?${q}`);
}

function showWarnings(warnings) {
  const list = $("query-warnings");
  list.replaceChildren(...warnings.map((w) => el("li", {}, w)));
  list.hidden = warnings.length === 0;
}

function cell(value) {
  return el("td", { class: "num" }, value);
}

function renderTable(data, took) {
  const info = $("table-info");
  const t = $("result-table");
  const { resultType, result } = data;
  if (resultType === "scalar" || resultType === "string") {
    info.textContent = `${resultType} in ${took} ms`;
    table(t, ["value"], [[String(result[1])]]);
    return;
  }
  const rows = result.slice(0, TABLE_ROWS).map((r) => {
    const value =
      resultType === "matrix"
        ? r.values.map(([ts, v]) => `${v} @${ts}`).join("\n")
        : r.value
          ? r.value[1]
          : r.histogram
            ? `histogram count ${r.histogram[1].count}`
            : "";
    return el("tr", {}, el("td", { class: "series" }, seriesName(r.metric)), cell(value));
  });
  const cut = result.length > TABLE_ROWS ? ` (first ${TABLE_ROWS} shown)` : "";
  info.textContent = `${result.length} series${cut} in ${took} ms.`;
  table(t, ["series", "value"], rows);
}

async function runTable(p) {
  const started = performance.now();
  const { data, warnings } = await postForm("/api/v1/query", { query: p.expr, time: p.end, dedup: p.dedup });
  showWarnings(warnings);
  renderTable(data, Math.round(performance.now() - started));
}

async function runGraph(p) {
  const start = p.end - p.range;
  const { data, warnings } = await postForm("/api/v1/query_range", {
    query: p.expr,
    start,
    end: p.end,
    step: p.step,
    dedup: p.dedup,
  });
  showWarnings(warnings);
  if (data.resultType !== "matrix") {
    $("graph-info").textContent = `A ${data.resultType} result cannot be graphed.`;
    return;
  }
  $("graph-info").textContent = draw($("graph"), data.result, start, p.end, p.step);
}

/** Runs the visible view's query (`force`: even if it already ran with these parameters). */
async function run(force = true) {
  let p;
  try {
    p = params();
  } catch (e) {
    showError($("query-error"), e.message);
    return;
  }
  // With an empty end, `p.end` is the current second: a view switched to later runs again.
  const key = JSON.stringify(p);
  if (!force && lastRun[tab] === key) return;
  lastRun[tab] = key;
  showError($("query-error"), "");
  remember(p.expr);
  saveToUrl(p);
  const info = $(tab === "table" ? "table-info" : "graph-info");
  info.textContent = "Running…";
  $("run").disabled = true;
  try {
    await (tab === "table" ? runTable(p) : runGraph(p));
  } catch (e) {
    info.textContent = "The query failed.";
    showError($("query-error"), e.message);
  } finally {
    $("run").disabled = false;
  }
}

function selectTab(name, runIt) {
  tab = name;
  for (const t of ["table", "graph"]) {
    const on = t === name;
    $(`tab-${t}`).setAttribute("aria-selected", String(on));
    $(`tab-${t}`).tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
  }
  if (runIt && $("expr").value.trim()) run(false);
}

/** Restores the form from `#query?…`. */
function restore(search) {
  const q = new URLSearchParams(search);
  if (q.has("expr")) $("expr").value = q.get("expr");
  if (q.has("range")) $("range").value = q.get("range");
  if (q.has("end")) $("end").value = q.get("end");
  if (q.has("step")) $("step").value = q.get("step");
  if (q.get("dedup") === "false") $("dedup-on").checked = false;
  return q.get("tab") === "graph" ? "graph" : "table";
}

/** Sets the view up, restoring the form from the URL's `search` part. */
export function init(search) {
  attach($("expr"), $("complete"), () => run());
  $("query-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  $("end-now").addEventListener("click", () => {
    $("end").value = "";
    run();
  });
  $("history-clear").addEventListener("click", () => {
    localStorage.removeItem(HISTORY_KEY);
    renderHistory();
  });
  for (const t of ["table", "graph"]) $(`tab-${t}`).addEventListener("click", () => selectTab(t, true));
  $("tab-table").parentElement.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const next = tab === "table" ? "graph" : "table";
      selectTab(next, true);
      $(`tab-${next}`).focus();
    }
  });
  renderHistory();
  const initialTab = restore(search);
  selectTab(initialTab, false);
  if ($("expr").value.trim()) run();
}

/** Shows the dedup switch (merge globals answer `dedup=false` with every replica). */
export function enableDedupSwitch() {
  $("dedup-wrap").hidden = false;
}
