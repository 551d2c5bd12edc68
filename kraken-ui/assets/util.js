// Small helpers shared by the pages: building DOM safely, formatting numbers
// and times, and the meaning of each deployment status.

/**
 * Creates an element. `attrs` keys starting with "on" become listeners,
 * `dataset` and `style` objects are merged, everything else is an attribute.
 * Children may be strings (inserted as text, never as HTML), nodes, arrays or null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "className") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- formatting -------------------------------------------------------

export function bytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

export function percent(n) {
  return typeof n === "number" && isFinite(n) ? `${n.toFixed(1)} %` : "–";
}

export function duration(secs) {
  if (typeof secs !== "number" || !isFinite(secs)) return "–";
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400);
  const hr = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (d) return `${d} d ${hr} h ${m} min`;
  if (hr) return `${hr} h ${m} min ${s} s`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

/** "12 s ago" style text for an RFC 3339 time. */
export function ago(iso) {
  const t = Date.parse(iso);
  if (!isFinite(t)) return "never";
  const secs = Math.round((Date.now() - t) / 1000);
  if (secs < 2) return "just now";
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

/** Local date and time for an RFC 3339 time. */
export function when(iso) {
  const t = new Date(iso);
  return isNaN(t) ? String(iso ?? "–") : t.toLocaleString();
}

export function clock(iso) {
  const t = new Date(iso);
  return isNaN(t) ? "" : t.toLocaleTimeString();
}

// ---- statuses -----------------------------------------------------------

const TONE = {
  Running: "ok",
  Errored: "err",
  Destroyed: "off",
  UpdateRequested: "warn",
  DestructionRequested: "warn",
  DelegatingDestruction: "warn",
  DestructionInProgress: "warn",
};

/** The colour family of a status: ok, err, warn (going away), off (gone) or prog (on its way). */
export function tone(status) {
  return TONE[status] || "prog";
}

/** "BuildingDeployment" → "Building deployment". */
export function statusText(status) {
  if (!status) return "Unknown";
  const words = String(status).replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A coloured status pill that also says the status in words; `attrs` may add an id. */
export function badge(status, attrs = {}) {
  return h("span", { ...attrs, className: `badge ${tone(status)}`, dataset: { status, tone: tone(status) } }, statusText(status));
}

/**
 * `address` when it is an http:// or https:// address, else null. Only such
 * addresses become links: an address a node reports could be anything, and a
 * `javascript:` link would run in this page.
 */
export function webAddress(address) {
  if (typeof address !== "string" || !address) return null;
  let url;
  try {
    url = new URL(address);
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

export function isGone(status) {
  return status === "Destroyed";
}

/** Calls `f` after `ms` of quiet. */
export function debounce(f, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => f(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
