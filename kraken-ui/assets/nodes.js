// The Nodes page: every machine of the platform with its live numbers and a
// short CPU and memory history, kept current by the event stream.

import { get, onEvent, eventsLive } from "./api.js";
import { h, replace, bytes, percent, duration, ago, when } from "./util.js";
import { lineChart } from "./charts.js";

export function mount(view) {
  const grid = h("div", { id: "node-list", className: "grid wide", "aria-live": "off" }, h("p", { className: "muted" }, "Loading nodes…"));
  const error = h("div", { className: "error-box", role: "alert", hidden: true });
  const updated = h("span", { className: "muted small", id: "nodes-updated" });
  replace(
    view,
    h("div", { className: "page-head" },
      h("div", {}, h("h1", {}, "Nodes"), h("p", { className: "muted" }, "Every machine of the platform. Numbers update live with each heartbeat.")),
      updated),
    error,
    grid,
  );

  const nodes = new Map();
  let alive = true;

  const draw = () => {
    if (!alive) return;
    const list = [...nodes.values()].sort((a, b) => (a.rollover_priority ?? 99) - (b.rollover_priority ?? 99) || String(a.name).localeCompare(String(b.name)));
    if (!list.length) {
      replace(grid, h("p", { className: "empty" }, "No nodes have joined yet."));
    } else {
      replace(grid, list.map(nodeCard));
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  };

  async function refresh() {
    try {
      const list = await get("/api/v1/nodes");
      if (!alive) return;
      error.hidden = true;
      nodes.clear();
      for (const n of list) nodes.set(n.id, n);
      draw();
    } catch (err) {
      if (!alive) return;
      error.textContent = `Could not load the nodes: ${err.message}`;
      error.hidden = false;
    }
  }
  refresh();

  const offNode = onEvent("node", (n) => {
    if (!n || !n.id) return;
    nodes.set(n.id, n);
    draw();
  });
  const offReconnect = onEvent("reconnect", refresh);
  // Polling as a fallback when the event stream is not open; also refreshes "x s ago".
  const timer = setInterval(() => (eventsLive() ? draw() : refresh()), 3000);
  return () => {
    alive = false;
    clearInterval(timer);
    offNode();
    offReconnect();
  };
}

function nodeCard(n) {
  const s = n.stats || {};
  const memPct = s.memory_total_bytes ? (100 * (s.memory_used_bytes || 0)) / s.memory_total_bytes : null;
  const load = Array.isArray(s.load) ? s.load.map((v) => Number(v).toFixed(2)).join(" · ") : "–";
  const history = Array.isArray(n.history) ? n.history : [];
  const deployments = Array.isArray(n.deployments) ? n.deployments : [];
  const up = Boolean(n.up);

  return h("article", { className: "card node-card", dataset: { id: n.id, up: String(up) }, "aria-label": `Node ${n.name}` },
    h("div", { className: "node-head" },
      h("div", {},
        h("h2", { className: "node-name" }, n.name || n.id),
        h("div", { className: "muted small" }, h("span", { className: "node-role" }, n.role === "orchestrator" ? "Orchestrator" : "Worker"), " · ",
          h("span", { className: "mono node-address" }, n.address || "no address"))),
      h("span", { className: `badge ${up ? "ok" : "err"} node-state` }, up ? "Up" : "Down")),
    h("div", { className: "metrics" },
      metric("CPU", h("span", { className: "node-cpu", dataset: { value: String(s.cpu_percent ?? "") } }, percent(s.cpu_percent)), s.cpu_percent),
      metric("Memory", h("span", { className: "node-memory", dataset: { used: String(s.memory_used_bytes ?? ""), total: String(s.memory_total_bytes ?? "") } },
        `${bytes(s.memory_used_bytes)} / ${bytes(s.memory_total_bytes)}`), memPct),
      metric("Load (1, 5, 15 min)", h("span", { className: "node-load" }, load)),
      metric("Uptime", h("span", { className: "node-uptime", dataset: { uptimeSecs: String(s.uptime_secs ?? "") } }, duration(s.uptime_secs)))),
    h("div", { className: "charts" },
      lineChart({ values: history.map((p) => p.cpu_percent), max: 100, kind: "cpu", label: "CPU, recent", format: percent }),
      lineChart({ values: history.map((p) => p.memory_used_bytes), max: s.memory_total_bytes, kind: "mem", label: "Memory, recent", format: bytes })),
    h("dl", { className: "kv", style: "margin-top:.75rem" },
      h("dt", {}, "Last heartbeat"), h("dd", { className: "node-heartbeat", title: when(n.last_heartbeat), dataset: { at: n.last_heartbeat || "" } }, ago(n.last_heartbeat)),
      h("dt", {}, "Rollover priority"), h("dd", { className: "node-priority" }, priorityText(n.rollover_priority)),
      h("dt", {}, "Deployments"), h("dd", { className: "node-deployments" },
        deployments.length
          ? deployments.map((id, i) => [i ? ", " : "", h("a", { href: `#/deployments/${encodeURIComponent(id)}`, className: "mono" }, String(id).slice(0, 12))])
          : h("span", { className: "muted" }, "none"))));
}

function metric(label, valueEl, pct) {
  return h("div", { className: "metric" },
    h("div", { className: "label" }, label),
    h("div", { className: "value" }, valueEl),
    typeof pct === "number" && isFinite(pct)
      ? h("div", { className: "meter", "aria-hidden": "true" }, h("span", { style: `width:${Math.min(100, Math.max(0, pct)).toFixed(1)}%` }))
      : null);
}

function priorityText(p) {
  if (p === 0) return "0 (orchestrator)";
  if (p === 1) return "1 (takes over if the orchestrator stops)";
  if (typeof p === "number") return `${p} (watching)`;
  return "–";
}
