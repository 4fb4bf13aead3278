// The console's entry point: who this node is (header), which view is open (the URL's hash:
// `#query`, `#topology`, `#targets`, `#dedup`, `#tsdb`, `#config`), and refreshing the open
// view every few seconds. Each view lives in its own module.

import { get } from "./api.js";
import { init as initQuery, enableDedupSwitch } from "./query.js";
import { refresh as refreshTopology } from "./topology.js";
import { refreshTargets, refreshDedup, refreshTsdb, refreshConfig } from "./status.js";

/** Each view's refresh and how often it runs while the view is open (0: once when opened). */
const VIEWS = {
  query: { refresh: null, every: 0 },
  topology: { refresh: refreshTopology, every: 3000 },
  targets: { refresh: refreshTargets, every: 5000 },
  dedup: { refresh: refreshDedup, every: 3000 },
  tsdb: { refresh: refreshTsdb, every: 15000 },
  config: { refresh: refreshConfig, every: 0 },
};

let timer = null;

function route() {
  const [name, search] = (location.hash.slice(1) || "query").split("?");
  const view = VIEWS[name] ? name : "query";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.view !== view;
  for (const a of document.querySelectorAll("[data-view-link]")) {
    if (a.dataset.viewLink === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `promtier ${view} · ${document.getElementById("node-name").textContent}`;
  clearInterval(timer);
  timer = null;
  const { refresh, every } = VIEWS[view];
  if (refresh) {
    refresh();
    if (every) timer = setInterval(refresh, every);
  }
  return search || "";
}

async function describeNode() {
  try {
    const { data } = await get("/api/v1/status/topology");
    const me = data.self;
    document.getElementById("node-name").textContent = me.name;
    const labels = Object.entries(me.externalLabels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(", ");
    document.getElementById("node-facts").textContent =
      `${me.role} · cluster ${me.cluster} · external labels {${labels}} · promtier ${me.version}`;
    if (me.dedupSwitch) enableDedupSwitch();
    if (me.dedupApi) document.getElementById("dedup-link").hidden = false;
    document.title = document.title.replace(/·.*$/, `· ${me.name}`);
  } catch (e) {
    document.getElementById("node-facts").textContent = `Cannot describe this node: ${e.message}`;
  }
}

window.addEventListener("hashchange", route);
const search = route();
initQuery(location.hash.startsWith("#query") ? search : "");
describeNode();
