// Renders /status.json as tables and refreshes it every 2 seconds.
"use strict";

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
