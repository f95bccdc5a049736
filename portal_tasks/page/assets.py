"""The page itself: one HTML file, one script, one style sheet, all served by portal (no CDN, no build step).

The script asks ``api/status`` every 2 seconds and draws the hosts with plain DOM calls (text only,
never HTML from data); its actions are JSON POSTs to ``api/forward`` and ``api/down``.
"""

from __future__ import annotations

INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>portal</title>
<link rel="stylesheet" href="page.css">
<script src="page.js" defer></script>
</head>
<body>
<header><h1>portal</h1><span id="updated">asking your hosts...</span></header>
<p id="message" role="status"></p>
<main id="hosts"></main>
</body>
</html>
"""

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
header { display: flex; align-items: baseline; gap: 1em; }
h1 { font-size: 1.4em; margin: 0; }
h2 { font-size: 1.1em; margin: 1.2em 0 0.4em; display: flex; gap: 0.8em; align-items: baseline; }
#updated, .user { color: #777; font-size: 0.9em; font-weight: normal; }
#message { min-height: 1.4em; color: #225; }
table { border-collapse: collapse; min-width: 50em; }
td, th { text-align: left; padding: 0.3em 0.8em; border-bottom: 1px solid #ddd; }
.health { font-weight: 600; }
.health-ok .health { color: #176c2a; }
.health-bad .health { color: #b3261e; }
.health-unknown .health { color: #8a6d00; }
.unreachable { color: #b3261e; }
button { font: inherit; padding: 0.15em 0.7em; cursor: pointer; }
.none { color: #777; }
"""

JS = """
"use strict";
const $ = (tag, props = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(el.dataset, v); else if (k === "on") el.addEventListener("click", v);
    else el[k] = v;
  }
  for (const c of children) el.append(c);
  return el;
};
let busy = false;

async function post(action, body) {
  document.getElementById("message").textContent = action + " " + Object.values(body).join(" ") + " ...";
  try {
    const res = await fetch("api/" + action, {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify(body)});
    const answer = await res.json();
    document.getElementById("message").textContent = answer.message;
  } catch (err) {
    document.getElementById("message").textContent = action + " failed: " + err;
  }
  refresh();
}

function serviceRow(host, s) {
  const link = s.url ? $("a", {href: s.url, target: "_blank", rel: "noopener noreferrer",
                               textContent: s.kind === "jupyter" ? "open JupyterLab" : "open dashboard"})
                     : $("span", {className: "none", textContent: "-"});
  return $("tr", {className: "service health-" + s.health, dataset: {host: host.host, service: s.name}},
    $("td", {textContent: s.kind}), $("td", {textContent: s.env}), $("td", {textContent: s.detail}),
    $("td", {className: "health", textContent: s.says}), $("td", {}, link));
}

function hostBlock(host) {
  const section = $("section", {dataset: {host: host.host}});
  if (!host.reachable) {
    section.append($("h2", {}, host.host, $("span", {className: "unreachable", textContent: "unreachable: " + host.error})));
    return section;
  }
  section.append($("h2", {}, host.host, $("span", {className: "user", textContent: "as " + host.user}),
    $("button", {className: "reforward", textContent: "re-forward", title: "forward every running service again",
                 on: () => post("forward", {host: host.host})})));
  if (!host.services.length) {
    section.append($("p", {className: "none", textContent: "nothing of yours runs here"}));
    return section;
  }
  const table = $("table", {}, $("tr", {}, ...["service", "env", "", "health", ""].map(t => $("th", {textContent: t}))));
  host.services.forEach(s => table.append(serviceRow(host, s)));
  section.append(table);
  const stops = $("p", {}, ...host.envs.map(env => $("button", {className: "stop", dataset: {env: env},
    textContent: "stop env " + env, on: () => {
      if (confirm("Stop env " + env + " on " + host.host + " (its cluster, Jupyter and windows)?"))
        post("down", {host: host.host, env: env});
    }})));
  section.append(stops);
  return section;
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const res = await fetch("api/status", {cache: "no-store"});
    const data = await res.json();
    const hosts = document.getElementById("hosts");
    hosts.replaceChildren(...data.hosts.map(hostBlock));
    if (!data.hosts.length) hosts.append($("p", {textContent: "no hosts yet: run portal up --host HOST first"}));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("updated").textContent = "portal page stopped? (" + err + ")";
  } finally {
    busy = false;
  }
}

refresh();
setInterval(refresh, 2000);
"""

FILES: dict[str, tuple[str, str]] = {
    "": ("text/html; charset=utf-8", INDEX),
    "page.js": ("text/javascript; charset=utf-8", JS),
    "page.css": ("text/css; charset=utf-8", CSS),
}
