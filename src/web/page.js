// The live cluster page: SHOW NODES and SHOW CLUSTER from /api, refreshed on every event of
// /events (and every 10 s in case the stream is down). No framework, no build step.
"use strict";

const state = { self: "", nodes: null, cluster: null, events: [] };
const MAX_EVENTS = 50;
const SVG = "http://www.w3.org/2000/svg";

// The API token, asked once (only when the node answers 401) and kept for this browser
// session: sent as "Authorization: Bearer" to /api, as ?token= to /events (EventSource
// cannot send headers).
const TOKEN_KEY = "bocluster-token";
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function authHeaders() {
  const t = token();
  return t ? { "Authorization": "Bearer " + t } : {};
}

// Shows the token form until a token is given; every caller waiting meanwhile gets it.
let asking = null;
function askToken(refused) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    document.getElementById("token-note").textContent =
      refused ? "That token was refused; try again." : "";
    form.hidden = false;
    input.value = "";
    input.focus();
    form.onsubmit = (event) => {
      event.preventDefault();
      const given = input.value.trim();
      if (!given) return;
      sessionStorage.setItem(TOKEN_KEY, given);
      form.hidden = true;
      asking = null;
      resolve(given);
    };
  });
  return asking;
}

async function call(url, options) {
  for (;;) {
    const response = await fetch(url, Object.assign({}, options, {
      headers: Object.assign({}, (options || {}).headers, authHeaders()),
    }));
    if (response.status !== 401) return response;
    const refused = token() !== "";
    sessionStorage.removeItem(TOKEN_KEY);
    await askToken(refused);
  }
}

async function query(stmt) {
  const response = await call("/api", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ stmt: stmt }),
  });
  const body = await response.json();
  if (body.retcode !== 0) throw new Error(stmt + ": " + body.errmsg);
  return body.results.map((row) => Object.fromEntries(body.columns.map((c, i) => [c, row[i]])));
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fillTable(id, columns, rows, key) {
  const table = document.getElementById(id);
  const head = el("tr");
  columns.forEach((c) => head.appendChild(el("th", {}, c)));
  table.tHead.replaceChildren(head);
  const body = rows.map((row) => {
    const tr = el("tr", { "data-key": key(row), "data-status": row.status });
    columns.forEach((c) => {
      const td = el("td", {}, row[c] === null || row[c] === undefined ? "" : String(row[c]));
      if (c === "status") td.className = "status s-" + row.status;
      tr.appendChild(td);
    });
    return tr;
  });
  table.tBodies[0].replaceChildren(...body);
}

const RANK = { alive: 0, no_db: 1, left: 2, unreachable: 3, dead: 4 };
const COLOUR = { alive: "#1a7f37", no_db: "#bf8700", dead: "#cf222e", left: "#6e7781", unreachable: "#8250df" };

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// The master in the middle, one circle per client around it, one dot per database entry.
function drawGraph() {
  const graph = document.getElementById("graph");
  const clients = new Map();
  for (const row of state.cluster || []) {
    const key = row.node_id || row.ip + ":" + row.port;
    if (!clients.has(key)) clients.set(key, { key: key, label: row.node_id || row.ip, entries: [] });
    clients.get(key).entries.push(row);
  }
  const items = [svg("circle", { cx: 0, cy: 0, r: 34, fill: "#1f2d3d", "data-node-id": state.self }),
    svg("text", { x: 0, y: 4, "text-anchor": "middle", fill: "#fff" }, state.self || "this node")];
  const list = [...clients.values()];
  const radius = 150;
  list.forEach((client, i) => {
    const angle = (2 * Math.PI * i) / Math.max(list.length, 1) - Math.PI / 2;
    const x = Math.round(radius * Math.cos(angle));
    const y = Math.round(radius * Math.sin(angle));
    const worst = client.entries.reduce((w, e) => (RANK[e.status] > RANK[w] ? e.status : w), "alive");
    items.unshift(svg("line", { x1: 0, y1: 0, x2: x, y2: y, stroke: COLOUR[worst] || "#999", "stroke-width": 2 }));
    items.push(svg("circle", { cx: x, cy: y, r: 24, fill: "#fff", stroke: COLOUR[worst] || "#999", "stroke-width": 3,
      "data-client": client.key, "data-status": worst }));
    items.push(svg("text", { x: x, y: y + 40, "text-anchor": "middle" }, client.label));
    client.entries.forEach((entry, j) => {
      const a = (2 * Math.PI * j) / client.entries.length;
      const dot = svg("circle", { cx: x + Math.round(13 * Math.cos(a)), cy: y + Math.round(13 * Math.sin(a)), r: 6,
        fill: COLOUR[entry.status] || "#999", "data-db": entry.db, "data-status": entry.status });
      dot.appendChild(svg("title", {}, entry.db + ": " + entry.status));
      items.push(dot);
    });
  });
  graph.replaceChildren(...items);
}

function render() {
  document.getElementById("self").textContent = state.self;
  if (state.nodes) {
    fillTable("nodes", ["node_id", "endpoint", "status", "generation", "databases", "masters", "version"],
      state.nodes, (r) => r.node_id);
  }
  if (state.cluster) {
    fillTable("cluster", ["host", "ip", "port", "db", "source", "status", "node_id"],
      state.cluster, (r) => r.ip + ":" + r.port + "/" + r.db);
  }
  drawGraph();
  const list = document.getElementById("events");
  list.replaceChildren(...state.events.map((e) => {
    const row = e.member || e.entry || {};
    const what = e.member ? row.node_id : row.db + "@" + (row.node_id || row.ip);
    const time = new Date(e.time_ms).toLocaleTimeString();
    const li = el("li", { "data-event": e.event }, time + "  " + e.event + "  " + what + "  " + (row.status || ""));
    li.className = "s-" + (row.status || "");
    return li;
  }));
}

let pending = null;
async function refresh() {
  pending = null;
  try {
    const [nodes, cluster] = await Promise.all([query("SHOW NODES"), query("SHOW CLUSTER")]);
    state.nodes = nodes;
    state.cluster = cluster;
    render();
  } catch (e) {
    document.getElementById("conn").textContent = "cannot read the cluster: " + e.message;
  }
}
function refreshSoon() {
  if (!pending) pending = setTimeout(refresh, 150);
}

function listen() {
  const t = token();
  const source = new EventSource("/events" + (t ? "?token=" + encodeURIComponent(t) : ""));
  source.onopen = () => { document.getElementById("conn").textContent = "live"; };
  source.onerror = () => {
    document.getElementById("conn").textContent = "reconnecting…";
    // A refused stream (401) is not retried by the browser: open it again, with the token
    // kept by then (the next /api call asks for it if it is wrong).
    if (source.readyState === EventSource.CLOSED) setTimeout(listen, 2000);
  };
  const names = ["member-join", "member-update", "member-failed", "member-leave",
    "entry-added", "entry-dropped", "entry-status", "entry-update", "lagged"];
  for (const name of names) {
    source.addEventListener(name, (message) => {
      if (name !== "lagged") {
        state.events.unshift(JSON.parse(message.data));
        state.events.length = Math.min(state.events.length, MAX_EVENTS);
      }
      refreshSoon();
    });
  }
}

async function start() {
  try {
    const health = await (await call("/health")).json();
    state.self = health.node_id;
  } catch (e) {
    document.getElementById("conn").textContent = "cannot reach the node: " + e.message;
  }
  await refresh();
  listen();
  setInterval(refresh, 10000);
}

start();
