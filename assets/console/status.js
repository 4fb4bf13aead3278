// The status views: targets (scrape targets, or a global's sources), dedup state with pin and
// unpin, the head block's statistics, and the effective (redacted) configuration with flags.

import { get, action, el, table, ago, duration, ApiError } from "./api.js";

const $ = (id) => document.getElementById(id);

function labelChips(labels) {
  return el(
    "ul",
    { class: "chips" },
    Object.entries(labels).map(([k, v]) => el("li", {}, `${k}="${v}"`)),
  );
}

export async function refreshTargets() {
  const info = $("targets-info");
  let data;
  try {
    ({ data } = await get("/api/v1/targets"));
  } catch (e) {
    info.textContent = `Cannot read the targets: ${e.message}`;
    return;
  }
  const pools = new Map();
  for (const t of data.activeTargets) {
    if (!pools.has(t.scrapePool)) pools.set(t.scrapePool, []);
    pools.get(t.scrapePool).push(t);
  }
  const dropped = data.droppedTargets.length;
  const up = data.activeTargets.filter((t) => t.health === "up").length;
  info.textContent = data.activeTargets.length
    ? `${up} of ${data.activeTargets.length} targets up, ${dropped} dropped (another shard's, or relabelled away).`
    : "This node scrapes and pulls nothing.";
  const sections = [];
  for (const [pool, targets] of pools) {
    const poolUp = targets.filter((t) => t.health === "up").length;
    const t = el("table", { class: "results" });
    table(
      t,
      ["endpoint", "state", "labels", "last scrape", "duration", "error"],
      targets.map((x) =>
        el(
          "tr",
          { "data-health": x.health },
          el("td", {}, el("a", { href: x.scrapeUrl }, x.scrapeUrl)),
          el("td", { class: `health ${x.health}` }, x.health),
          el("td", {}, labelChips(x.labels)),
          el("td", {}, ago(x.lastScrape)),
          el("td", { class: "num" }, duration(x.lastScrapeDuration)),
          el("td", { class: x.lastError ? "error-text" : "" }, x.lastError),
        ),
      ),
    );
    sections.push(el("h3", {}, `${pool} (${poolUp}/${targets.length} up)`), el("div", { class: "scroll" }, t));
  }
  $("targets").replaceChildren(...sections);
}

async function pin(shard, replica) {
  const msg = $("dedup-message");
  try {
    if (replica) {
      await action("/api/v1/dedup/pin", { shard, replica });
      msg.textContent = `Pinned ${shard} to replica ${replica}.`;
    } else {
      await action("/api/v1/dedup/unpin", { shard });
      msg.textContent = `${shard} is elected automatically again.`;
    }
  } catch (e) {
    const why = e instanceof ApiError && e.status === 403 ? " (your user may not make admin requests)" : "";
    msg.textContent = `Failed: ${e.message}${why}`;
  }
  await refreshDedup();
}

function coverage(c) {
  return c ? `${c.targetsUp}/${c.targetsTotal} targets up, ${c.series} series` : "";
}

export async function refreshDedup() {
  let data;
  try {
    ({ data } = await get("/api/v1/dedup"));
  } catch (e) {
    $("dedup-sets").replaceChildren(el("p", { class: "error" }, `Cannot read the dedup state: ${e.message}`));
    return;
  }
  const rows = [];
  for (const set of data) {
    for (const r of set.replicas) {
      const elected = set.elected === r.replica;
      const pinned = set.pinned === r.replica;
      rows.push(
        el(
          "tr",
          { "data-shard": set.shard, "data-replica": r.replica, "data-elected": String(elected) },
          el("th", { scope: "row" }, set.shard),
          el("td", {}, r.replica),
          el("td", { class: `health ${r.healthy ? "up" : "down"}` }, r.healthy ? "healthy" : "unhealthy"),
          el("td", {}, elected ? (pinned ? "elected (pinned)" : "elected") : "standby"),
          el("td", {}, coverage(r.coverage), r.shortCoverage ? el("div", { class: "small" }, r.shortCoverage) : ""),
          el("td", { class: "error-text" }, r.lastError || ""),
          el("td", { class: "num" }, String(set.failovers)),
          el(
            "td",
            {},
            el("button", { type: "button", class: "small pin", disabled: pinned, onclick: () => pin(set.shard, r.replica) }, `Pin ${r.replica}`),
            set.pinned && r === set.replicas[0]
              ? el("button", { type: "button", class: "small unpin", onclick: () => pin(set.shard, null) }, "Unpin")
              : "",
          ),
        ),
      );
    }
  }
  const t = el("table", { class: "results" });
  table(t, ["replica set", "replica", "health", "role", "coverage", "last error", "failovers", "operator"], rows);
  $("dedup-sets").replaceChildren(el("div", { class: "scroll" }, t));
}

export async function refreshTsdb() {
  const info = $("tsdb-info");
  let data;
  try {
    ({ data } = await get("/api/v1/status/tsdb"));
  } catch (e) {
    info.textContent = `No TSDB statistics: ${e.message}`;
    $("tsdb").replaceChildren();
    return;
  }
  const h = data.headStats;
  const time = (ms) => (ms > 0 && ms < 8e15 ? new Date(ms).toISOString() : "no samples");
  info.textContent = `Head block: ${h.numSeries} series, ${h.chunkCount} chunks, ${h.numLabelPairs} label pairs, from ${time(h.minTime)} to ${time(h.maxTime)}.`;
  const card = (title, list, what) => {
    const t = el("table", { class: "results" });
    table(t, ["name", what], list.map((x) => [x.name, String(x.value)]));
    return el("div", { class: "card" }, el("h3", {}, title), t);
  };
  $("tsdb").replaceChildren(
    card("Series by metric name", data.seriesCountByMetricName, "series"),
    card("Values by label name", data.labelValueCountByLabelName, "values"),
    card("Memory by label name", data.memoryInBytesByLabelName, "bytes"),
    card("Series by label pair", data.seriesCountByLabelValuePair, "series"),
  );
}

export async function refreshConfig() {
  try {
    const [{ data: config }, { data: flags }] = await Promise.all([get("/api/v1/status/config"), get("/api/v1/status/flags")]);
    $("config").textContent = config.yaml;
    table($("flags"), ["flag", "value"], Object.entries(flags).map(([k, v]) => [k, v]));
  } catch (e) {
    $("config").textContent = `Cannot read the configuration: ${e.message}`;
  }
}
