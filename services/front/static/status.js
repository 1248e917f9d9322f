// Renders /status.json as tables, with plots of each routed service's last minutes, and refreshes it every
// 2 seconds.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// niceMax rounds a plot's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// plot draws one series as a line; seconds without requests (gaps) break the line where "has" says so.
// Red ticks mark the seconds in which the gateway ejected an instance.
function plot(title, values, has, ejections, format) {
  const W = 300, H = 80, top = 14, n = values.length;
  const max = niceMax(Math.max(0, ...values.filter((_, i) => has[i])));
  const x = (i) => (n > 1 ? (i * W) / (n - 1) : 0);
  const y = (v) => top + (H - top) * (1 - v / max);
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "plot", role: "img", "data-testid": "plot", "data-series": title });
  s.append(svg("line", { x1: 0, y1: H, x2: W, y2: H, class: "axis" }));
  ejections.forEach((e, i) => { if (e > 0) s.append(svg("line", { x1: x(i), y1: top, x2: x(i), y2: H, class: "ejection" })); });
  let points = [], drawn = 0;
  const flush = () => {
    if (points.length) {
      s.append(svg("polyline", { points: points.join(" "), class: "series" }));
      drawn += points.length;
    }
    points = [];
  };
  values.forEach((v, i) => { if (has[i]) points.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); else flush(); });
  flush();
  s.dataset.points = String(drawn);
  const last = values.length && has[values.length - 1] ? format(values[values.length - 1]) : "—";
  const label = svg("text", { x: 2, y: 10, class: "label" });
  label.textContent = `${title}: ${last} (scale ${format(max)})`;
  s.append(label);
  return s;
}

// plots are a routed service's requests/s, 5xx ratio and p99 latency over the last minutes.
function plots(name, t) {
  if (!t) return null;
  const has = t.requests.map((r) => r > 0);
  const always = t.requests.map(() => true);
  const minutes = Math.round(t.requests.length / 60);
  return el("div", { class: "plots", "data-testid": "plots", "data-service": name },
    plot("requests/s", t.requests, always, t.ejections, (v) => String(Math.round(v))),
    plot("5xx", t.error_ratio, has, t.ejections, (v) => (100 * v).toFixed(v > 0 && v < 0.01 ? 2 : 0) + " %"),
    plot("p99", t.p99_ms, has, t.ejections, (v) => (v >= 1000 ? (v / 1000).toFixed(1) + " s" : v + " ms")),
    el("p", { class: "muted" }, `The gateway's answers for this service, per second, over the last ${minutes} minutes; red lines: an instance ejected.`));
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function badge(status) {
  const cls = status.startsWith("passing") ? "confirmed" : status === "warning" ? "pending" : "payment_failed";
  return el("span", { class: "status " + cls }, status);
}

async function refresh() {
  try {
    const res = await fetch("/status.json", { cache: "no-store" });
    const s = await res.json();
    document.getElementById("updated").textContent = "Updated " + new Date(s.generated_at).toLocaleTimeString() + ".";
    const c = s.consul;
    document.getElementById("consul").replaceChildren(c.connected
      ? el("div", { class: "success" }, "Consul is answering the gateway.")
      : el("div", { class: "notice" }, "Consul is unreachable (" + c.staleness_seconds.toFixed(1) + " s): the gateway routes with the last known instances."));
    const sections = s.services.map((svc) => el("section", {},
      el("h2", {}, svc.name, " ", el("span", { class: "muted" }, svc.public ? "public" : "internal",
        " · " + svc.passing + " of " + svc.instances.length + " passing", svc.source === "last_known" ? " · last known" : "")),
      plots(svc.name, svc.traffic),
      el("table", {},
        el("thead", {}, el("tr", {}, ["Instance", "Node", "Status", "Checks", "Gateway"].map((t) => el("th", {}, t)))),
        el("tbody", {}, svc.instances.length ? svc.instances.map((i) => el("tr", {},
          el("td", {}, el("code", {}, i.id)), el("td", {}, i.node), el("td", {}, badge(i.status)),
          el("td", {}, i.checks.map((ch) => el("div", {}, ch.name + ": " + ch.status))),
          el("td", {}, i.gateway ? (i.gateway.requests + " requests, " + i.gateway.in_flight + " in flight" + (i.gateway.ejected_until ? ", ejected until " + new Date(i.gateway.ejected_until).toLocaleTimeString() : "")) : "—")))
          : el("tr", {}, el("td", { colspan: "5" }, "no instances"))))));
    document.getElementById("services").replaceChildren(...sections);
  } catch (e) {
    document.getElementById("consul").replaceChildren(el("div", { class: "notice" }, "The front cannot be reached: " + e));
  }
}

refresh();
setInterval(refresh, 2000);
