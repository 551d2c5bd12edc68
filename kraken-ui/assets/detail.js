// The page of one deployment: its status history, live logs, CPU and memory,
// the app's link, and the Update and Destroy actions (each confirmed first).

import { get, mutate, onEvent, eventsLive } from "./api.js";
import { h, replace, badge, tone, statusText, when, clock, bytes, percent, isGone, webAddress } from "./util.js";
import { lineChart } from "./charts.js";

const MAX_LINES = 5000;

export function mount(view, { id }) {
  const header = h("div", { className: "page-head", id: "deployment-head" }, h("h1", {}, "Deployment"));
  const error = h("div", { className: "error-box", id: "deployment-error", role: "alert", hidden: true });
  const loadError = h("div", { className: "error-box", role: "alert", hidden: true });
  const actions = actionPanel(id, () => refresh());
  const facts = h("div", { id: "deployment-facts" });
  const graphs = h("div", { className: "charts", id: "deployment-graphs" });
  const timeline = h("ol", { className: "timeline", id: "status-history" });
  const logs = logPanel(id);

  replace(
    view,
    h("p", { className: "small" }, h("a", { href: "#/deployments" }, "← All deployments")),
    header,
    loadError,
    error,
    h("div", { className: "detail" },
      h("div", { className: "stack" },
        h("section", { className: "card", "aria-labelledby": "logs-title" }, h("h2", { id: "logs-title" }, "Logs"), logs.el),
        h("section", { className: "card", "aria-labelledby": "res-title" }, h("h2", { id: "res-title" }, "Resource use"), graphs)),
      h("div", { className: "stack" },
        h("section", { className: "card", "aria-labelledby": "about-title" }, h("h2", { id: "about-title" }, "About"), facts, actions.el),
        h("section", { className: "card", "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "Status history"), timeline))),
  );

  let alive = true;
  let current = null;

  async function refresh() {
    try {
      const d = await get(`/api/v1/deployments/${encodeURIComponent(id)}`);
      if (!alive) return;
      loadError.hidden = true;
      current = d;
      render(d);
    } catch (err) {
      if (!alive) return;
      loadError.textContent = err.status === 404 ? `There is no deployment ${id}.` : `Could not load the deployment: ${err.message}`;
      loadError.hidden = false;
    }
  }

  function render(d) {
    document.title = `${d.name || id} · Kraken`;
    replace(header,
      h("div", {},
        h("h1", { id: "deployment-name" }, d.name || id),
        h("p", { className: "muted mono small" }, id)),
      h("div", { style: "display:flex;gap:.75rem;align-items:center;flex-wrap:wrap" },
        badge(d.status, { id: "status-current" }),
        webAddress(d.address) && !isGone(d.status)
          ? h("a", { id: "app-link", className: "button primary", href: webAddress(d.address), target: "_blank", rel: "noopener" }, "Open app ↗")
          : null));

    if (d.error) {
      replace(error, h("strong", {}, "Error: "), d.error);
      error.hidden = false;
    } else {
      error.hidden = true;
    }

    const m = d.manifest || {};
    const app = m.app || {};
    const config = m.config || {};
    replace(facts, h("dl", { className: "kv" },
      h("dt", {}, "Address"), h("dd", {}, webAddress(d.address)
        ? h("a", { href: webAddress(d.address), target: "_blank", rel: "noopener", className: "mono" }, d.address)
        : d.address ? h("span", { className: "mono" }, d.address) : h("span", { className: "muted" }, "not published")),
      h("dt", {}, "Repository"), h("dd", { className: "mono small" }, d.url || "–"),
      h("dt", {}, "Branch"), h("dd", { className: "mono" }, d.branch || "–"),
      h("dt", {}, "Commit"), h("dd", { className: "mono" }, d.commit ? String(d.commit).slice(0, 12) : "–"),
      h("dt", {}, "Node"), h("dd", {}, d.node || "–"),
      h("dt", {}, "Builder"), h("dd", {}, d.builder || "–"),
      h("dt", {}, "Language"), h("dd", {}, config.lang || "–"),
      h("dt", {}, "Port"), h("dd", {}, String(config.port ?? "–")),
      app.version ? [h("dt", {}, "Version"), h("dd", {}, app.version)] : null,
      app.author ? [h("dt", {}, "Author"), h("dd", {}, app.author)] : null,
      app.endpoint ? [h("dt", {}, "Endpoint"), h("dd", { id: "app-endpoint" }, endpointView(app.endpoint))] : null,
      h("dt", {}, "Created"), h("dd", {}, when(d.created_at)),
      h("dt", {}, "Updated"), h("dd", {}, when(d.updated_at))));

    actions.update(d);

    const history = Array.isArray(d.status_history) ? d.status_history : [];
    replace(timeline, history.length
      ? history.slice().reverse().map((e, i) => h("li", { className: tone(e.status), dataset: { status: e.status } },
        h("div", {}, h("strong", {}, statusText(e.status)), i === 0 ? h("span", { className: "muted small" }, " (now)") : null),
        h("time", { datetime: e.at, title: when(e.at) }, when(e.at)),
        e.message ? h("div", { className: "msg" }, e.message) : null))
      : h("li", {}, "No history yet."));

    const stats = Array.isArray(d.stats_history) ? d.stats_history : [];
    const s = d.stats || null;
    replace(graphs,
      lineChart({ values: stats.map((p) => p.cpu_percent), kind: "cpu", label: "CPU", format: percent, max: 100 }),
      lineChart({ values: stats.map((p) => p.memory_bytes), kind: "mem", label: "Memory", format: bytes }),
      h("p", { className: "muted small", id: "deployment-stats", style: "grid-column:1/-1;margin:0" },
        s ? `Now: CPU ${percent(s.cpu_percent)}, memory ${bytes(s.memory_bytes)}` : "No resource numbers: the app is not running."));
  }

  refresh();
  let pending = null;
  const offDeployment = onEvent("deployment", (d) => {
    if (!d || d.id !== id) return;
    // The event carries the list fields; the history needs the full document.
    if (current) render({ ...current, ...d });
    clearTimeout(pending);
    pending = setTimeout(refresh, 300);
  });
  const offReconnect = onEvent("reconnect", () => {
    refresh();
    logs.reconnect();
  });
  // Resource numbers arrive only by polling; status too when the event stream is down.
  const timer = setInterval(() => {
    if (!eventsLive() || (current && current.status === "Running")) refresh();
  }, 5000);

  return () => {
    alive = false;
    clearInterval(timer);
    clearTimeout(pending);
    offDeployment();
    offReconnect();
    logs.close();
    document.title = "Kraken";
  };
}

/** Update and Destroy, each behind a confirmation. */
function actionPanel(id, refresh) {
  const message = h("div", { role: "status", "aria-live": "polite", className: "small", id: "action-message" });
  const updateBtn = h("button", { type: "button", id: "update-button" }, "Update");
  const destroyBtn = h("button", { type: "button", id: "destroy-button", className: "danger-outline" }, "Destroy");
  const confirmBox = h("div", { className: "confirm", id: "confirm-box", hidden: true });
  let name = id;

  function ask(kind) {
    const isDestroy = kind === "destroy";
    const yes = h("button", { type: "button", id: isDestroy ? "confirm-destroy" : "confirm-update", className: isDestroy ? "danger" : "primary" },
      isDestroy ? "Yes, destroy it" : "Yes, update it");
    const no = h("button", { type: "button", id: "confirm-cancel" }, "Cancel");
    replace(confirmBox,
      h("p", { style: "margin-top:0" }, isDestroy
        ? `Destroy ${name}? Its container is stopped and removed; the app stops answering.`
        : `Update ${name}? It is rebuilt from the newest commit of its branch and restarted.`),
      h("div", { className: "actions" }, yes, no));
    confirmBox.hidden = false;
    no.addEventListener("click", () => {
      confirmBox.hidden = true;
      (isDestroy ? destroyBtn : updateBtn).focus();
    });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      no.disabled = true;
      try {
        if (isDestroy) await mutate("DELETE", `/api/v1/deployments/${encodeURIComponent(id)}`);
        else await mutate("POST", `/api/v1/deployments/${encodeURIComponent(id)}/update`);
        message.textContent = isDestroy ? "Destruction requested." : "Update requested.";
        message.className = "small badge ok";
        confirmBox.hidden = true;
        refresh();
      } catch (err) {
        message.textContent = `${isDestroy ? "Destroy" : "Update"} failed: ${err.message}`;
        message.className = "small error-box";
        yes.disabled = false;
        no.disabled = false;
      }
    });
    no.focus();
    confirmBox.scrollIntoView({ block: "nearest" });
  }
  updateBtn.addEventListener("click", () => ask("update"));
  destroyBtn.addEventListener("click", () => ask("destroy"));

  const el = h("div", {}, h("div", { className: "actions" }, updateBtn, destroyBtn), confirmBox, message);
  return {
    el,
    update(d) {
      name = d.name || id;
      const gone = isGone(d.status) || ["DestructionRequested", "DelegatingDestruction", "DestructionInProgress"].includes(d.status);
      destroyBtn.disabled = gone;
      updateBtn.disabled = gone;
      if (gone) confirmBox.hidden = true;
    },
  };
}

/** The live log: past lines, then a server-sent stream; pause, filter and download. */
function logPanel(id) {
  const lines = [];
  let nextOffset = 0;
  let paused = false;
  let unseen = 0;
  let source = null;
  let closed = false;
  let retry = null;

  const view = h("pre", { id: "log-view", className: "log-view", tabindex: "0", "aria-label": "Deployment log", "aria-live": "off" });
  const filter = h("input", { type: "search", id: "log-filter", placeholder: "Filter lines", "aria-label": "Filter log lines" });
  const pauseBtn = h("button", { type: "button", id: "log-pause", "aria-pressed": "false" }, "Pause");
  const download = h("button", { type: "button", id: "log-download" }, "Download .txt");
  const status = h("span", { className: "log-status", id: "log-status", role: "status" }, "Connecting…");

  const matches = (l) => {
    const q = filter.value.trim().toLowerCase();
    return !q || String(l.line).toLowerCase().includes(q);
  };
  const lineEl = (l) => h("span", { className: `ln ln-${l.stream}`, dataset: { seq: String(l.seq) } }, h("span", { className: "ts" }, clock(l.at)), l.line, "\n");

  function atBottom() {
    return view.scrollHeight - view.scrollTop - view.clientHeight < 40;
  }
  function redraw() {
    const shown = lines.filter(matches);
    replace(view, shown.length ? shown.map(lineEl) : h("span", { className: "muted" }, lines.length ? "No line matches the filter." : "No log lines yet."));
    view.scrollTop = view.scrollHeight;
  }
  function add(l) {
    if (typeof l.seq === "number") {
      if (l.seq < nextOffset) return; // already have it (after a reconnect)
      nextOffset = l.seq + 1;
    }
    lines.push(l);
    if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
    if (paused) {
      unseen++;
      pauseBtn.textContent = `Resume (${unseen} new)`;
      return;
    }
    if (!matches(l)) return;
    const stick = atBottom();
    if (view.firstChild && view.firstChild.classList && view.firstChild.classList.contains("muted")) view.replaceChildren();
    view.append(lineEl(l));
    if (stick) view.scrollTop = view.scrollHeight;
  }

  function follow() {
    if (closed || typeof EventSource === "undefined") return;
    source = new EventSource(`/api/v1/deployments/${encodeURIComponent(id)}/logs?follow=true&offset=${nextOffset}`);
    source.addEventListener("open", () => {
      status.textContent = "Live";
    });
    source.addEventListener("log", (e) => {
      try {
        add(JSON.parse(e.data));
      } catch {
        // a malformed event is skipped
      }
    });
    source.addEventListener("error", () => {
      status.textContent = "Log stream interrupted, reconnecting…";
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        clearTimeout(retry);
        retry = setTimeout(follow, 3000);
      }
    });
  }

  async function start() {
    try {
      const page = await get(`/api/v1/deployments/${encodeURIComponent(id)}/logs?offset=0`);
      if (closed) return;
      for (const l of page.lines || []) add(l);
      if (typeof page.next_offset === "number") nextOffset = Math.max(nextOffset, page.next_offset);
      redraw();
    } catch (err) {
      status.textContent = `Could not load the log: ${err.message}`;
    }
    follow();
  }

  pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      unseen = 0;
      redraw();
    }
  });
  filter.addEventListener("input", redraw);
  download.addEventListener("click", () => {
    const text = lines.map((l) => `${l.at} [${l.stream}] ${l.line}`).join("\n") + "\n";
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const a = h("a", { href: url, download: `kraken-${id}.log.txt` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });

  start();
  return {
    el: h("div", {}, h("div", { className: "log-tools" }, filter, pauseBtn, download, status), view),
    close() {
      closed = true;
      clearTimeout(retry);
      if (source) source.close();
    },
    reconnect() {
      if (source && source.readyState !== EventSource.CLOSED) return;
      clearTimeout(retry);
      follow();
    },
  };
}

// `app.endpoint` is free metadata: a link only when it is an http(s) URL,
// plain text otherwise (never an href for any other scheme).
function endpointView(text) {
  let url = null;
  try {
    url = new URL(text);
  } catch {
    url = null;
  }
  if (url && (url.protocol === "http:" || url.protocol === "https:")) {
    return h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer", className: "mono" }, text);
  }
  return h("span", { className: "mono" }, text);
}
