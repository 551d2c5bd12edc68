// The Info page: how to onboard an app — the shipwreck.toml reference and
// the languages this platform can build, each with an example.

import { get } from "./api.js";
import { h, replace } from "./util.js";

const KEYS = [
  ["app", "name", "string", "yes", "The app's name, also its container name: 1–63 characters of lowercase letters, digits and “-”, starting with a letter and not ending with “-”.", "\"hello-api\""],
  ["app", "version", "string", "no", "Free-form version shown in the interface.", "\"1.0.0\""],
  ["app", "author", "string", "no", "Who made it.", "\"Ada\""],
  ["app", "endpoint", "string", "no", "Free metadata, any text: for example a link to the app's home page (shown as a link when it is an http:// or https:// address).", "\"https://github.com/you/app\""],
  ["config", "port", "integer", "yes", "The one TCP port the app listens on inside its container (1–65535). The platform publishes it on the node.", "8080"],
  ["config", "lang", "string", "no", "Which builder makes the image: one of the languages below. Left out, the builder is detected from the files at the root.", "\"node\""],
  ["config", "run", "string", "no", "Shell command that starts the app. Left out, it is inferred: a Procfile's web line, package.json's start script or main, a Django manage.py, a FastAPI/Flask app object, main.py or app.py. The check before deploying shows what was inferred and why.", "\"node server.js\""],
  ["config", "test", "string", "no", "Shell command run in the built image before it is deployed; a non-zero exit stops the deployment as Errored.", "\"npm test\""],
  ["config", "dockerfile", "string", "no", "With lang = \"dockerfile\": path of the Dockerfile inside the repository. Default “Dockerfile”.", "\"docker/Dockerfile\""],
  ["config", "root", "string", "no", "The folder of the repository that holds the app (one package of a monorepo); the manifest stays at the repository root.", "\"services/api\""],
  ["config", "health", "string", "no", "Path inside the app that answers when it is healthy, starting with “/”.", "\"/api/health\""],
  ["config", "env", "table", "no", "Environment variables of the container, as a table of strings.", "{ GREETING = \"hi\" }"],
];

const EXAMPLE = `[app]
name = "hello-api"
version = "1.0.0"
author = "Ada"
endpoint = "https://github.com/ada/hello-api"

[config]
port = 8080
health = "/"
test = "node --check server.js"

[config.env]
GREETING = "hello"
`;

export function mount(view) {
  const builders = h("div", { id: "builder-list", className: "stack" }, h("p", { className: "muted" }, "Loading the languages…"));
  replace(
    view,
    h("div", { className: "page-head" },
      h("div", {}, h("h1", {}, "Info"), h("p", { className: "muted" }, "How to put an app on this platform."))),
    h("section", { className: "card", "aria-labelledby": "steps-title" },
      h("h2", { id: "steps-title" }, "Onboarding an app in four steps"),
      h("ol", { className: "rules" },
        h("li", {}, "Put the app in a git repository that the platform's machines can reach (a public https URL, git://, file:// or a path on the orchestrator)."),
        h("li", {}, "Add a file named ", h("code", {}, "shipwreck.toml"), " at the root of the branch you want to deploy (see below)."),
        h("li", {}, "Make the app listen on all interfaces (", h("code", {}, "0.0.0.0"), "), on the port written in ", h("code", {}, "[config] port"), "."),
        h("li", {}, "On ", h("a", { href: "#/deployments" }, "Deployments"), ", paste the URL and branch, press Check, then Create."))),
    h("section", { className: "card", "aria-labelledby": "ref-title" },
      h("h2", { id: "ref-title" }, "shipwreck.toml reference"),
      h("div", { className: "table-scroll" },
        h("table", { className: "ref", id: "shipwreck-reference" },
          h("thead", {}, h("tr", {}, ["Key", "Type", "Required", "Meaning", "Example"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, KEYS.map(([table, key, type, req, meaning, example]) =>
            h("tr", { dataset: { key: `${table}.${key}` } },
              h("td", {}, h("code", {}, `[${table}] ${key}`)),
              h("td", {}, type),
              h("td", {}, req),
              h("td", {}, meaning),
              h("td", {}, h("code", {}, example))))))),
      h("h3", { style: "margin-top:1rem" }, "Rules"),
      h("ul", { className: "rules" },
        h("li", {}, "The file is TOML, named exactly ", h("code", {}, "shipwreck.toml"), ", at the root of the branch."),
        h("li", {}, "Only the keys above are allowed; a misspelt key is an error, not silently ignored."),
        h("li", {}, "The app serves exactly one port. Other ports are not reachable from the network."),
        h("li", {}, "Every error names the file, line and column, the key, and what would be valid — the Check button on the Deployments page shows it before anything is built."),
        h("li", {}, "Update rebuilds from the newest commit of the same branch; Destroy stops and removes the container.")),
      h("h3", { style: "margin-top:1rem" }, "A complete example"),
      h("pre", { className: "block" }, EXAMPLE)),
    h("section", { className: "card", "aria-labelledby": "langs-title" },
      h("h2", { id: "langs-title" }, "Languages this platform builds"),
      h("p", { className: "muted" }, "Set one of these names as ", h("code", {}, "lang"), ", or leave it out to let the platform detect it."),
      builders),
  );

  let alive = true;
  get("/api/v1/builders")
    .then((list) => {
      if (!alive) return;
      replace(builders, list.length
        ? list.map((b) => h("article", { className: "builder", dataset: { builder: b.name } },
          h("h3", {}, h("code", {}, b.name)),
          h("p", {}, b.description || ""),
          b.example ? h("details", {}, h("summary", {}, `Example shipwreck.toml for ${b.name}`), h("pre", { className: "block" }, b.example)) : null))
        : h("p", { className: "muted" }, "This platform has no builders registered."));
    })
    .catch((err) => {
      if (alive) replace(builders, h("div", { className: "error-box", role: "alert" }, `Could not load the languages: ${err.message}`));
    });
  return () => {
    alive = false;
  };
}
