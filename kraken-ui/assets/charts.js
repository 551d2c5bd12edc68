// Small line charts drawn as inline SVG (no library): recent CPU and memory.

const SVG = "http://www.w3.org/2000/svg";
const W = 300;
const H = 64;

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * A labelled line chart.
 * - `values`: numbers, oldest first (non-numbers are skipped)
 * - `max`: top of the scale (for example 100 for percent); default the largest value
 * - `kind`: "cpu" or "mem" (colour)
 * - `label`: what is drawn, `format`: how the latest value is written
 */
export function lineChart({ values, max, kind, label, format, className = "" }) {
  const points = values.filter((v) => typeof v === "number" && isFinite(v));
  const top = Math.max(max || 0, ...points, 1e-9);
  const root = document.createElement("figure");
  root.className = `chart ${className}`.trim();
  root.style.margin = "0";
  const last = points.length ? format(points[points.length - 1]) : "no data yet";
  const caption = document.createElement("figcaption");
  caption.className = "chart-label";
  const name = document.createElement("span");
  name.textContent = label;
  const value = document.createElement("span");
  value.textContent = last;
  caption.append(name, value);
  root.append(caption);

  const el = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  el.setAttribute("aria-label", `${label}: ${points.length} samples, latest ${last}, scale up to ${format(top)}`);
  for (const frac of [0.25, 0.5, 0.75]) {
    el.append(svg("line", { x1: 0, x2: W, y1: H * frac, y2: H * frac, stroke: "currentColor", "stroke-opacity": 0.08, "vector-effect": "non-scaling-stroke" }));
  }
  if (points.length >= 2) {
    const step = W / (points.length - 1);
    const xy = points.map((v, i) => [i * step, H - 2 - (v / top) * (H - 4)]);
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    el.append(svg("polygon", { points: `0,${H} ${line} ${W},${H}`, class: `area-${kind}` }));
    el.append(svg("polyline", { points: line, fill: "none", class: `line-${kind}`, "stroke-width": 2, "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round" }));
  } else if (points.length === 1) {
    const y = H - 2 - (points[0] / top) * (H - 4);
    el.append(svg("line", { x1: 0, x2: W, y1: y, y2: y, class: `line-${kind}`, "stroke-width": 2, "vector-effect": "non-scaling-stroke" }));
  }
  root.append(el);
  return root;
}
