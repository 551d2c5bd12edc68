// The Platform page: the orchestrator, node health, deployments by status and
// the platform token.

import { get, getToken, setToken, onEvent, onTokenChange, onReplicationChange, eventsLive } from "./api.js";
import { h, replace, badge, tone } from "./util.js";

const STATUS_ORDER = [
  "Running", "Errored", "DeploymentRequested", "ValidatingDeploymentData", "RetrievingApplicationData",
  "DelegatingDeployment", "BuildingDeployment", "TestingDeployment", "Deploying", "UpdateRequested",
  "DestructionRequested", "DelegatingDestruction", "DestructionInProgress", "Destroyed",
];

export function mount(view) {
  const summary = h("div", { id: "platform-summary", className: "grid" }, h("p", { className: "muted" }, "Loading the platform…"));
  const error = h("div", { className: "error-box", id: "platform-error", role: "alert", hidden: true });
  const tokenCard = renderTokenCard();

  replace(
    view,
    h("div", { className: "page-head" },
      h("div", {}, h("h1", {}, "Platform"), h("p", { className: "muted" }, "The machines of this platform and what runs on them, at a glance."))),
    error,
    summary,
    tokenCard,
  );

  let alive = true;
  async function refresh() {
    try {
      const platform = await get("/api/v1/platform");
      if (!alive) return;
      error.hidden = true;
      renderSummary(summary, platform);
    } catch (err) {
      if (!alive) return;
      error.textContent = `Could not load the platform: ${err.message}`;
      error.hidden = false;
    }
  }
  refresh();
  // Counts change with every deployment event; refetch at most every second.
  let pending = null;
  const soon = () => {
    if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 1000);
  };
  const offDeployment = onEvent("deployment", soon);
  const offReconnect = onEvent("reconnect", refresh);
  const offReplication = onReplicationChange(soon);
  // Node health changes without a deployment event: poll slowly (faster without the event stream).
  const timer = setInterval(() => refresh(), eventsLive() ? 10000 : 5000);
  return () => {
    alive = false;
    clearTimeout(pending);
    clearInterval(timer);
    offDeployment();
    offReconnect();
    offReplication();
    tokenCard.cleanup();
  };
}

function renderSummary(el, p) {
  const orch = p.orchestrator || {};
  const up = Number(p.nodes_up ?? 0);
  const total = Number(p.node_count ?? 0);
  const healthTone = total === 0 ? "off" : up === total ? "ok" : up === 0 ? "err" : "warn";
  const healthText = total === 0 ? "No nodes" : up === total ? "All nodes up" : `${total - up} node${total - up === 1 ? "" : "s"} down`;
  const byStatus = p.deployments_by_status || {};
  const statuses = Object.keys(byStatus).sort((a, b) => order(a) - order(b));

  replace(
    el,
    h("section", { className: "card", "aria-labelledby": "orch-title" },
      h("h2", { id: "orch-title" }, "Orchestrator"),
      h("dl", { className: "kv" },
        h("dt", {}, "Name"), h("dd", { id: "orchestrator-name" }, orch.name || "–"),
        h("dt", {}, "Address"), h("dd", { className: "mono" }, orch.address || "–"),
        h("dt", {}, "Node id"), h("dd", { className: "mono small" }, orch.node_id || "–"),
        h("dt", {}, "Version"), h("dd", {}, p.version || "–"),
        h("dt", {}, "Epoch"), h("dd", { title: "Goes up by one every time another node takes over as orchestrator" }, String(p.epoch ?? "–")),
        h("dt", {}, "Replication"), h("dd", { id: "replication-state" }, replicationBadge(p.replication)),
      )),
    h("section", { className: "card", "aria-labelledby": "nodes-title" },
      h("h2", { id: "nodes-title" }, "Nodes"),
      h("p", { className: "big", id: "nodes-up" }, `${up} / ${total}`),
      h("p", { className: "muted" }, "nodes answering"),
      h("span", { className: `badge ${healthTone}`, id: "nodes-health" }, healthText),
      h("p", { style: "margin-top:.75rem" }, h("a", { href: "#/nodes" }, "See every node →"))),
    h("section", { className: "card", "aria-labelledby": "deps-title" },
      h("h2", { id: "deps-title" }, "Deployments"),
      h("p", { className: "big", id: "deployment-count" }, String(p.deployment_count ?? 0)),
      statuses.length
        ? h("ul", { className: "status-bars", id: "deployments-by-status" },
          statuses.map((s) => h("li", { dataset: { status: s, tone: tone(s) } }, badge(s), h("strong", {}, String(byStatus[s])))))
        : h("p", { className: "muted" }, "Nothing deployed yet."),
      h("p", { style: "margin-top:.75rem" }, h("a", { href: "#/deployments" }, "Deploy an app →"))),
  );
}

const REPLICATION = {
  synchronous: ["ok", "Synchronous", "a rollover candidate confirms every change before it is acknowledged"],
  degraded: ["warn", "Degraded", "changes are acknowledged without a copy on another machine"],
  off: ["off", "Off", "no other machine could hold a copy"],
};

function replicationBadge(r) {
  const [toneName, label, meaning] = REPLICATION[r && r.state] || ["off", "Unknown", ""];
  const title = [meaning, r && r.reason, r && r.candidate ? `copy on ${r.candidate}` : ""].filter(Boolean).join("; ");
  return h("span", { className: `badge ${toneName}`, dataset: { state: (r && r.state) || "" }, title }, label);
}

function order(status) {
  const i = STATUS_ORDER.indexOf(status);
  return i < 0 ? STATUS_ORDER.length : i;
}

function renderTokenCard() {
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "Paste the platform token" });
  const state = h("p", { id: "token-state", role: "status", "aria-live": "polite" });
  const clear = h("button", { type: "button", id: "token-clear" }, "Forget token");
  const show = () => {
    const saved = Boolean(getToken());
    state.textContent = saved ? "A token is saved in this browser." : "No token saved: you can look around, but deploying, updating and destroying will ask for it.";
    state.className = saved ? "badge ok" : "muted";
    clear.hidden = !saved;
  };
  const form = h("form", {
    onSubmit: (e) => {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) {
        input.focus();
        return;
      }
      setToken(token);
      input.value = "";
    },
  },
  h("div", { className: "field" },
    h("label", { for: "token-input" }, "Platform token"),
    input),
  h("div", { className: "actions" },
    h("button", { type: "submit", className: "primary", id: "token-save" }, "Save token"),
    clear));
  clear.addEventListener("click", () => setToken(""));
  const card = h("section", { className: "card token-card", "aria-labelledby": "token-title" },
    h("h2", { id: "token-title" }, "Access"),
    h("p", { className: "muted small" }, "Changes (deploy, update, destroy) need the token that ", h("code", {}, "kraken up"), " printed. It is kept in this browser only."),
    form,
    state);
  card.cleanup = onTokenChange(show);
  show();
  return card;
}
