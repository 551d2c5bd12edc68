// The Deployments page: a form that checks a git URL and branch before it
// lets a person deploy them, and the list of deployments, live.

import { getAllDeployments, mutate, onEvent, eventsLive } from "./api.js";
import { h, replace, badge, ago, when, debounce, isGone, webAddress } from "./util.js";

export function mount(view) {
  const form = createForm();
  const showGone = h("input", { type: "checkbox", id: "show-destroyed" });
  const list = h("div", { id: "deployment-list" }, h("p", { className: "muted" }, "Loading deployments…"));
  const error = h("div", { className: "error-box", role: "alert", hidden: true });

  replace(
    view,
    h("div", { className: "page-head" },
      h("div", {}, h("h1", {}, "Deployments"), h("p", { className: "muted" }, "Deploy a git branch that has a shipwreck.toml at its root, and follow what runs."))),
    form.el,
    h("section", { className: "card", "aria-labelledby": "list-title", style: "margin-top:1rem" },
      h("div", { className: "page-head", style: "margin-bottom:.5rem" },
        h("h2", { id: "list-title", style: "margin:0" }, "All deployments"),
        h("label", { for: "show-destroyed", style: "font-weight:500;display:flex;gap:.4rem;align-items:center;margin:0" }, showGone, "Show destroyed")),
      error,
      list),
  );

  const deployments = new Map();
  let alive = true;
  const draw = () => alive && renderList(list, [...deployments.values()], showGone.checked);
  showGone.addEventListener("change", draw);

  async function refresh() {
    try {
      const items = await getAllDeployments();
      if (!alive) return;
      error.hidden = true;
      deployments.clear();
      for (const d of items) deployments.set(d.id, d);
      draw();
    } catch (err) {
      if (!alive) return;
      error.textContent = `Could not load the deployments: ${err.message}`;
      error.hidden = false;
    }
  }
  refresh();
  const offDeployment = onEvent("deployment", (d) => {
    if (!d || !d.id) return;
    deployments.set(d.id, { ...(deployments.get(d.id) || {}), ...d });
    draw();
  });
  const offReconnect = onEvent("reconnect", refresh);
  const timer = setInterval(() => (eventsLive() ? draw() : refresh()), 5000);

  return () => {
    alive = false;
    clearInterval(timer);
    offDeployment();
    offReconnect();
    form.cleanup();
  };
}

function renderList(el, items, showGone) {
  const hidden = items.filter((d) => isGone(d.status)).length;
  const shown = items
    .filter((d) => showGone || !isGone(d.status))
    .sort((a, b) => String(b.created_at || "").localeCompare(String(a.created_at || "")));
  if (!shown.length) {
    replace(el, h("p", { className: "empty" },
      items.length ? `No live deployments (${hidden} destroyed, tick “Show destroyed” to see them).` : "No deployments yet. Use the form above to deploy your first app."));
    return;
  }
  replace(el, h("table", { className: "list" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "App"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Address"),
      h("th", { scope: "col" }, "Branch"), h("th", { scope: "col" }, "Node"), h("th", { scope: "col" }, "Updated"))),
    h("tbody", {}, shown.map((d) =>
      h("tr", { className: "deployment-row", dataset: { id: d.id, status: d.status } },
        h("td", {},
          h("a", { className: "name-link", href: `#/deployments/${encodeURIComponent(d.id)}` }, d.name || d.id),
          h("div", { className: "muted small mono" }, String(d.id).slice(0, 12))),
        h("td", { dataset: { label: "Status" } }, badge(d.status)),
        h("td", { dataset: { label: "Address" } },
          webAddress(d.address) && !isGone(d.status)
            ? h("a", { className: "deployment-link mono", href: webAddress(d.address), target: "_blank", rel: "noopener" }, d.address)
            : h("span", { className: "muted" }, "–")),
        h("td", { dataset: { label: "Branch" } }, h("span", { className: "mono" }, d.branch || "–"),
          d.commit ? h("span", { className: "muted small mono" }, ` @ ${String(d.commit).slice(0, 8)}`) : null),
        h("td", { dataset: { label: "Node" } }, d.node || "–"),
        h("td", { dataset: { label: "Updated" }, title: when(d.updated_at) }, ago(d.updated_at)))))));
}

/** The create form. Create is enabled only when the current URL and branch passed validation. */
function createForm() {
  const url = h("input", { id: "deploy-url", type: "text", inputmode: "url", autocomplete: "off", spellcheck: "false", required: true,
    placeholder: "https://git.example/you/app.git or /path/to/repo", "aria-describedby": "validate-result" });
  const branch = h("input", { id: "deploy-branch", type: "text", autocomplete: "off", spellcheck: "false", required: true, value: "main" });
  const check = h("button", { type: "button", id: "validate-button" }, "Check");
  const create = h("button", { type: "submit", id: "create-button", className: "primary", disabled: true }, "Create deployment");
  const result = h("div", { id: "validate-result", className: "result", dataset: { state: "idle" }, role: "status", "aria-live": "polite" },
    "Enter a git URL and a branch; they are checked before you can deploy.");

  let seq = 0; // answers to older checks are ignored
  let okKey = null; // the inputs that passed validation
  const key = () => `${url.value.trim()}\n${branch.value.trim()}`;
  const sync = () => {
    create.disabled = okKey === null || okKey !== key();
  };

  async function validate() {
    const u = url.value.trim();
    const b = branch.value.trim();
    okKey = null;
    sync();
    if (!u || !b) {
      result.dataset.state = "idle";
      replace(result, !u ? "Enter the git URL of the app." : "Enter the branch to deploy.");
      return;
    }
    const mine = ++seq;
    const k = key();
    result.dataset.state = "checking";
    replace(result, `Checking ${u} (${b})…`);
    try {
      // Checking fetches the repository, so it needs the platform token too.
      const v = await mutate("POST", "/api/v1/validate", { url: u, branch: b });
      if (mine !== seq) return;
      okKey = k;
      result.dataset.state = "ok";
      replace(result, manifestSummary(v));
    } catch (err) {
      if (mine !== seq) return;
      result.dataset.state = "error";
      replace(result, h("strong", {}, "This cannot be deployed yet:"), h("pre", { id: "validate-error" }, err.message));
    }
    sync();
  }
  const later = debounce(validate, 700);
  const onInput = () => {
    seq++; // whatever is in flight no longer matches the inputs
    sync();
    if (okKey !== key()) {
      result.dataset.state = "idle";
      replace(result, "Checking when you stop typing… (or press Check)");
    }
    later();
  };
  url.addEventListener("input", onInput);
  branch.addEventListener("input", onInput);
  check.addEventListener("click", () => {
    later.cancel();
    validate();
  });

  const submitError = h("div", { className: "error-box", id: "create-error", role: "alert", hidden: true });
  const el = h("form", {
    className: "card",
    "aria-labelledby": "create-title",
    onSubmit: async (e) => {
      e.preventDefault();
      if (create.disabled) return;
      submitError.hidden = true;
      create.disabled = true;
      create.textContent = "Creating…";
      try {
        const answer = await mutate("POST", "/api/v1/deployments", { url: url.value.trim(), branch: branch.value.trim() });
        location.hash = `#/deployments/${encodeURIComponent(answer.id)}`;
      } catch (err) {
        submitError.textContent = `The deployment was not created: ${err.message}`;
        submitError.hidden = false;
        create.textContent = "Create deployment";
        sync();
      }
    },
  },
  h("h2", { id: "create-title" }, "New deployment"),
  submitError,
  h("div", { className: "row" },
    h("div", { className: "field grow" }, h("label", { for: "deploy-url" }, "Git URL"), url),
    h("div", { className: "field", style: "flex:0 1 200px" }, h("label", { for: "deploy-branch" }, "Branch"), branch),
    h("div", { className: "field" }, check)),
  result,
  h("div", { className: "actions" }, create));

  return { el, cleanup: () => later.cancel() };
}

function manifestSummary(v) {
  const m = v.manifest || {};
  const app = m.app || {};
  const config = m.config || {};
  return h("div", {},
    h("strong", {}, "Ready to deploy."),
    h("dl", { className: "kv", style: "margin-top:.5rem", id: "validate-manifest" },
      h("dt", {}, "Name"), h("dd", { dataset: { field: "name" } }, app.name || "–"),
      app.version ? [h("dt", {}, "Version"), h("dd", {}, app.version)] : null,
      h("dt", {}, "Language"), h("dd", { dataset: { field: "lang" } }, config.lang || "–"),
      h("dt", {}, "Port"), h("dd", { dataset: { field: "port" } }, String(config.port ?? "–")),
      h("dt", {}, "Builder"), h("dd", { dataset: { field: "builder" } }, v.builder || "–", v.reason ? h("span", { className: "muted" }, ` (${v.reason})`) : null),
      v.commit ? [h("dt", {}, "Commit"), h("dd", { className: "mono" }, String(v.commit).slice(0, 12))] : null),
    planSteps(v.plan));
}

// The build plan the check made: each step's command and why it was chosen.
function planSteps(plan) {
  if (!plan) return null;
  const rows = [["Image", plan.base_image]];
  for (const step of plan.install || []) rows.push(["Install", step]);
  for (const step of plan.build || []) rows.push(["Build", step]);
  if (plan.start) rows.push(["Start", plan.start]);
  return h("dl", { className: "kv plan", style: "margin-top:.5rem", id: "validate-plan" },
    plan.context && plan.context !== "." ? [h("dt", {}, "Folder"), h("dd", { className: "mono" }, plan.context)] : null,
    rows.map(([label, step]) => [
      h("dt", {}, label),
      h("dd", { dataset: { step: label.toLowerCase() } },
        h("code", {}, step.command),
        h("div", { className: "muted small" }, step.reason)),
    ]));
}
