// Kraken's web interface: hash routing between the pages and the live event stream.

import { startEvents } from "./api.js";
import { h, replace } from "./util.js";
import * as platform from "./platform.js";
import * as nodes from "./nodes.js";
import * as deployments from "./deployments.js";
import * as detail from "./detail.js";
import * as info from "./info.js";

const ROUTES = [
  [/^\/?$/, "platform", platform],
  [/^\/nodes\/?$/, "nodes", nodes],
  [/^\/deployments\/?$/, "deployments", deployments],
  [/^\/deployments\/([^/]+)\/?$/, "deployments", detail, (m) => ({ id: decodeURIComponent(m[1]) })],
  [/^\/info\/?$/, "info", info],
];

const TITLES = { platform: "Platform", nodes: "Nodes", deployments: "Deployments", info: "Info" };

let cleanup = null;

function route() {
  const view = document.getElementById("view");
  const path = location.hash.replace(/^#/, "") || "/";
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
    cleanup = null;
  }
  for (const [pattern, nav, page, params] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${TITLES[nav]} · Kraken`;
    cleanup = page.mount(view, params ? params(m) : {});
    return;
  }
  replace(view, h("h1", {}, "Page not found"), h("p", {}, "Nothing lives at ", h("code", {}, location.hash), ". ", h("a", { href: "#/" }, "Go to the platform overview.")));
}

window.addEventListener("hashchange", () => {
  route();
  // Move focus to the new page for keyboard and screen-reader users.
  document.getElementById("view")?.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});
startEvents();
route();
