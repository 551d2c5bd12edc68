// Talking to the platform: the REST API under /api/v1, the platform token,
// the live event stream, and the banners for a lost connection and for
// degraded replication.

const TOKEN_KEY = "kraken.token";

/** An error the API answered with (or a failure to reach it), with a message for a person. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Private browsing without storage: the token lives for this page only.
  }
  memoryToken = token;
  tokenListeners.forEach((f) => f(token));
}

let memoryToken = "";
const tokenListeners = new Set();
export function onTokenChange(f) {
  tokenListeners.add(f);
  return () => tokenListeners.delete(f);
}

function currentToken() {
  return getToken() || memoryToken;
}

// ---- connection state -------------------------------------------------

let connected = true;
let bannerTimer = null;
const connectionListeners = new Set();

/** Calls `f(isConnected)` whenever the platform becomes reachable or unreachable. */
export function onConnectionChange(f) {
  connectionListeners.add(f);
  return () => connectionListeners.delete(f);
}

export function isConnected() {
  return connected;
}

function setConnected(value) {
  if (value === connected) return;
  connected = value;
  const banner = document.getElementById("connection-banner");
  if (banner) {
    clearTimeout(bannerTimer);
    if (!value) {
      banner.dataset.state = "lost";
      banner.textContent = "Connection to the platform lost. Retrying… (the data shown may be out of date)";
      banner.hidden = false;
    } else {
      banner.dataset.state = "restored";
      banner.textContent = "Connection to the platform is back.";
      banner.hidden = false;
      bannerTimer = setTimeout(() => {
        banner.hidden = true;
      }, 5000);
    }
  }
  connectionListeners.forEach((f) => f(value));
}

// ---- replication ------------------------------------------------------

let replication = null;
const replicationListeners = new Set();

/** Calls `f(status)` whenever the platform's replication status changes. */
export function onReplicationChange(f) {
  replicationListeners.add(f);
  return () => replicationListeners.delete(f);
}

/** The last replication status seen (`{state, reason, candidate}`), or null. */
export function replicationStatus() {
  return replication;
}

function setReplication(status) {
  replication = status || null;
  const banner = document.getElementById("replication-banner");
  if (banner) {
    const degraded = replication && replication.state === "degraded";
    banner.dataset.state = replication ? replication.state : "";
    if (degraded) {
      const why = replication.reason || "no rollover candidate holds a copy of the state";
      banner.textContent =
        `Replication degraded: ${why}. Changes are kept on the orchestrator's machine only until a copy catches up; ` +
        "if that machine failed now, the latest changes could be lost.";
    }
    banner.hidden = !degraded;
  }
  replicationListeners.forEach((f) => f(replication));
}

async function refreshReplication() {
  try {
    const platform = await request("GET", "/api/v1/platform");
    setReplication(platform && platform.replication);
  } catch {
    // The connection banner says it already.
  }
}

// ---- requests ---------------------------------------------------------

async function request(method, path, body, { auth = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth) {
    const token = currentToken();
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    setConnected(false);
    throw new ApiError("The platform cannot be reached. Check that the kraken agent is running and the network is up.", 0);
  }
  if ([502, 503, 504].includes(response.status)) {
    // These come from something between the browser and the platform: treat as unreachable.
    setConnected(false);
  } else {
    setConnected(true);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message =
      data && typeof data.error === "string" && data.error
        ? data.error
        : `The platform answered ${response.status} ${response.statusText || ""}`.trim();
    throw new ApiError(message, response.status);
  }
  return data;
}

/** GET a JSON document. */
export const get = (path) => request("GET", path);

/**
 * Every deployment, page after page (pages of the server's default size,
 * each after the `next` cursor of the one before), oldest request first.
 */
export async function getAllDeployments() {
  const all = [];
  let after = null;
  for (;;) {
    const page = await get(after ? `/api/v1/deployments?after=${encodeURIComponent(after)}` : "/api/v1/deployments");
    all.push(...(Array.isArray(page.items) ? page.items : []));
    if (!page.next || page.next === after) return all;
    after = page.next;
  }
}

/**
 * A call that needs the platform token (every change, and checking a
 * repository): sends the token, and when the platform answers 401 asks for
 * the token and tries once more.
 */
export async function mutate(method, path, body) {
  if (!currentToken()) {
    const ok = await askForToken("This action needs the platform token printed by `kraken up`.");
    if (!ok) throw new ApiError("No token given: the action was not sent.", 401);
  }
  try {
    return await request(method, path, body, { auth: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      const ok = await askForToken(`The platform refused the token: ${err.message}`);
      if (!ok) throw new ApiError("No valid token given: the action was not sent.", 401);
      return await request(method, path, body, { auth: true });
    }
    throw err;
  }
}

/** Opens the token dialog; resolves to true when a token was saved. */
export function askForToken(reason) {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-dialog-input");
  const reasonEl = document.getElementById("token-dialog-reason");
  const cancel = document.getElementById("token-dialog-cancel");
  if (!dialog || typeof dialog.showModal !== "function") {
    const token = window.prompt(reason + "\n\nPlatform token:");
    if (token) setToken(token.trim());
    return Promise.resolve(Boolean(token));
  }
  reasonEl.textContent = reason;
  input.value = "";
  return new Promise((resolve) => {
    const onClose = () => {
      dialog.removeEventListener("close", onClose);
      cancel.removeEventListener("click", onCancel);
      const token = input.value.trim();
      if (dialog.returnValue === "save" && token) {
        setToken(token);
        resolve(true);
      } else {
        resolve(false);
      }
    };
    const onCancel = () => dialog.close("cancel");
    dialog.addEventListener("close", onClose);
    cancel.addEventListener("click", onCancel);
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
}

// ---- live events ------------------------------------------------------

const eventListeners = { deployment: new Set(), node: new Set(), reconnect: new Set() };
let source = null;
let everLost = false;

/** Subscribes to `deployment`, `node` or `reconnect` events of /api/v1/events. */
export function onEvent(kind, f) {
  eventListeners[kind].add(f);
  return () => eventListeners[kind].delete(f);
}

function dispatch(kind, raw) {
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    return;
  }
  eventListeners[kind].forEach((f) => f(data));
}

/** Opens the platform's event stream once; it reconnects by itself. */
export function startEvents() {
  if (source || typeof EventSource === "undefined") return;
  source = new EventSource("/api/v1/events");
  source.addEventListener("open", () => {
    setConnected(true);
    refreshReplication();
    if (everLost) {
      everLost = false;
      eventListeners.reconnect.forEach((f) => f());
    }
  });
  source.addEventListener("error", () => {
    everLost = true;
    setConnected(false);
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (for example a non-stream answer): try again later.
      source = null;
      setTimeout(startEvents, 3000);
    }
  });
  source.addEventListener("deployment", (e) => dispatch("deployment", e.data));
  source.addEventListener("node", (e) => dispatch("node", e.data));
  source.addEventListener("replication", (e) => {
    try {
      setReplication(JSON.parse(e.data));
    } catch {
      // A malformed event changes nothing.
    }
  });
}

/** Whether the event stream is open right now (else pages poll). */
export function eventsLive() {
  return Boolean(source && source.readyState === EventSource.OPEN);
}
