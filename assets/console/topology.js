// The Topology view: the cluster as a picture (globals above what they pull, leaf groups with
// their shards and replicas, push nodes, external Prometheus servers, demo targets below) and
// the same facts as a table. Health is what this node's probes saw; pull health, lag and the
// elected replica are known to the global that pulls, so they show on a global's console.

import { get, el, table, duration } from "./api.js";

const NS = "http://www.w3.org/2000/svg";
const NODE_W = 160;
const NODE_H = 58;
const GAP = 10;
const PAD = 10;
const SHARD_HEAD = 18;
const GROUP_HEAD = 22;
const GROUP_GAP = 24;
const ROW_GAP = 80;
const $ = (id) => document.getElementById(id);

function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** Rows of the picture, top first: each global above what it pulls, then sources, then targets. */
function rows(groups) {
  const level = new Map();
  const of = (g, depth) => {
    if (level.has(g)) return level.get(g);
    let l = g.kind === "demo" ? 0 : 1;
    if (g.kind === "global") {
      l = 2;
      for (const f of g.from) {
        const src = groups.find((x) => x.name === f && x !== g);
        if (src && depth < 16) l = Math.max(l, of(src, depth + 1) + 1);
      }
    }
    level.set(g, l);
    return l;
  };
  const out = new Map();
  for (const g of groups) {
    const l = of(g, 0);
    if (!out.has(l)) out.set(l, []);
    out.get(l).push(g);
  }
  return [...out.entries()].sort((a, b) => b[0] - a[0]).map(([, gs]) => gs);
}

/** Whether a group's nodes are drawn straight in its box (no shard boxes). */
const flat = (g) => g.kind === "global" || g.kind === "push" || g.kind === "demo";

function groupSize(g) {
  if (flat(g)) {
    const n = g.shards.reduce((k, s) => k + s.nodes.length, 0);
    return { w: n * NODE_W + (n - 1) * GAP + 2 * PAD, h: GROUP_HEAD + NODE_H + PAD };
  }
  let w = 0;
  for (const s of g.shards) w += s.nodes.length * NODE_W + (s.nodes.length - 1) * GAP + 2 * PAD;
  w += (g.shards.length - 1) * GAP + 2 * PAD;
  return { w, h: GROUP_HEAD + SHARD_HEAD + NODE_H + 2 * PAD };
}

/** What this node knows of pulling `name` (its own pulls only), or null. */
function myPull(data, name) {
  const p = data.pulls.find((x) => x.from === data.self.name && x.to === name && x.state);
  return p ? p.state : null;
}

function pullSummary(state) {
  if (!state) return "";
  const parts = state.health === "up" ? [] : [`pull ${state.health}`];
  if (state.elected === true) parts.push(state.pinned ? "elected (pinned)" : "elected");
  if (state.elected === false) parts.push("standby");
  if (state.lagSeconds !== null && state.lagSeconds !== undefined) parts.push(`lag ${duration(state.lagSeconds)}`);
  return parts.length ? parts.join(" · ") : "pulled";
}

const TITLES = {
  global: (g) => `${g.name} (global, ${g.dedup} dedup)`,
  leaf: (g) => `${g.name} (leaf group)`,
  push: () => "push tier",
  prometheus: (g) => `${g.name} (Prometheus servers)`,
  demo: () => "demo targets",
};

function drawNode(node, box, data) {
  const state = myPull(data, node.name);
  const line2 = node.self ? `${node.kind} · this node` : `${node.kind} · ${node.health}`;
  const line3 = pullSummary(state);
  const cls = ["node", node.health, node.self ? "self" : "", state && state.elected === true ? "elected" : ""]
    .filter(Boolean)
    .join(" ");
  const tip = [`${node.name} (${node.kind}) at ${node.url}: ${node.health}`, node.error, line3]
    .filter(Boolean)
    .join("\n");
  return svg(
    "a",
    {
      href: `${node.url}/`,
      "data-node": node.name,
      "data-health": node.health,
      "data-elected": state && state.elected !== null ? String(state.elected) : "",
      "aria-label": tip.replace(/\n/g, "; "),
    },
    svg("title", {}, tip),
    svg("rect", { x: box.x, y: box.y, width: NODE_W, height: NODE_H, rx: 6, class: cls }),
    svg("text", { x: box.x + 8, y: box.y + 17, class: "name" }, node.name),
    svg("text", { x: box.x + 8, y: box.y + 33, class: "detail" }, line2),
    svg("text", { x: box.x + 8, y: box.y + 49, class: "detail" }, line3),
  );
}

/** The picture of `data` as an SVG element. */
function picture(data) {
  const byName = new Map(data.nodes.map((n) => [n.name, n]));
  const layout = rows(data.groups).map((gs) => {
    const sizes = gs.map(groupSize);
    return {
      gs,
      sizes,
      w: sizes.reduce((a, s) => a + s.w, 0) + (gs.length - 1) * GROUP_GAP,
      h: Math.max(...sizes.map((s) => s.h)),
    };
  });
  const width = Math.max(...layout.map((r) => r.w)) + 2 * PAD;
  const height = layout.reduce((a, r) => a + r.h, 0) + (layout.length - 1) * ROW_GAP + 2 * PAD;
  const boxes = new Map();
  const frames = [];
  let y = PAD;
  for (const row of layout) {
    let x = (width - row.w) / 2;
    row.gs.forEach((g, i) => {
      const size = row.sizes[i];
      frames.push(svg("rect", { x, y, width: size.w, height: size.h, rx: 8, class: `group ${g.kind}` }));
      const title = (TITLES[g.kind] || ((x) => x.name))(g);
      frames.push(svg("text", { x: x + PAD, y: y + 16, class: "group-title" }, title));
      let nx = x + PAD;
      for (const s of g.shards) {
        if (flat(g)) {
          for (const name of s.nodes) {
            boxes.set(name, { x: nx, y: y + GROUP_HEAD });
            nx += NODE_W + GAP;
          }
          continue;
        }
        const sw = s.nodes.length * NODE_W + (s.nodes.length - 1) * GAP + 2 * PAD;
        const sy = y + GROUP_HEAD;
        frames.push(svg("rect", { x: nx, y: sy, width: sw, height: SHARD_HEAD + NODE_H + PAD, rx: 6, class: "shard" }));
        frames.push(svg("text", { x: nx + PAD, y: sy + 13, class: "shard-title" }, `shard ${s.name}`));
        let px = nx + PAD;
        for (const name of s.nodes) {
          boxes.set(name, { x: px, y: sy + SHARD_HEAD });
          px += NODE_W + GAP;
        }
        nx += sw + GAP;
      }
      x += size.w + GROUP_GAP;
    });
    y += row.h + ROW_GAP;
  }
  const edges = data.pulls
    .filter((p) => boxes.has(p.from) && boxes.has(p.to))
    .map((p) => {
      const a = boxes.get(p.from);
      const b = boxes.get(p.to);
      const [x1, y1, x2, y2] = [a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2, b.y];
      const mid = (y2 - y1) / 2;
      let cls = "pull";
      if (p.state) {
        if (p.state.health === "down") cls += " down";
        else if (p.state.elected === true) cls += " elected";
        else if (p.state.elected === false) cls += " standby";
        else cls += " mine";
      }
      return svg("path", { d: `M${x1},${y1} C${x1},${y1 + mid} ${x2},${y2 - mid} ${x2},${y2}`, class: cls });
    });
  const nodes = [...boxes.entries()].filter(([n]) => byName.has(n)).map(([n, box]) => drawNode(byName.get(n), box, data));
  return svg(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "group",
      "aria-label": `Topology of cluster ${data.self.cluster}: ${data.nodes.length} nodes`,
    },
    ...frames,
    ...edges,
    ...nodes,
  );
}

function renderTable(data) {
  const rows = data.nodes.map((n) => {
    const state = myPull(data, n.name);
    return el(
      "tr",
      {
        "data-node": n.name,
        "data-health": n.health,
        "data-elected": state && state.elected !== null ? String(state.elected) : "",
      },
      el("td", {}, el("a", { href: `${n.url}/` }, n.name), n.self ? " (this node)" : ""),
      el("td", {}, n.kind),
      el("td", {}, n.group),
      el("td", {}, n.shard || ""),
      el("td", {}, n.replica || ""),
      el("td", { class: `health ${n.health}` }, n.health, n.error ? el("div", { class: "small" }, n.error) : ""),
      el(
        "td",
        {},
        pullSummary(state),
        state && state.error ? el("div", { class: "small" }, state.error) : "",
      ),
    );
  });
  table($("topology-table"), ["node", "kind", "group", "shard", "replica", "health (probed from here)", "pulled by this node"], rows);
}

/** Fetches and draws the topology (called every few seconds while the view is open). */
export async function refresh() {
  const info = $("topology-info");
  let data;
  try {
    ({ data } = await get("/api/v1/status/topology"));
  } catch (e) {
    info.textContent = `Cannot read the topology: ${e.message}`;
    return;
  }
  if (!data.nodes.length) {
    info.textContent = "This node runs outside a topology file: there is nothing to draw.";
    $("topology-picture").replaceChildren();
    $("topology-table").replaceChildren();
    return;
  }
  const down = data.nodes.filter((n) => n.health === "down").length;
  const pulls = data.pulls.some((p) => p.from === data.self.name);
  info.textContent =
    `Cluster ${data.self.cluster}: ${data.nodes.length} nodes in ${data.groups.length} groups, ${down} down ` +
    `(probed from ${data.self.name} at ${new Date().toLocaleTimeString()}).` +
    (pulls ? "" : " Pull health, lag and elections are known to the globals: open a global's console to see them.");
  $("topology-picture").replaceChildren(picture(data));
  renderTable(data);
}
