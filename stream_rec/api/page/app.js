// The live page: one user's list over server-sent events, click-to-send, the worker's panel.
// Plain script, no build step. Every id shown comes from the API and is set as text only.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY_S = 600;
const state = { user: null, stream: null, list: null, pending: null, points: [] };

function eventId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return "web-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

function setStatus(text) { $("status").textContent = text; }

async function loadUsers() {
  try {
    const response = await fetch("/v1/users?limit=24");
    const { users } = await response.json();
    const datalist = $("known-users");
    const chips = $("recent");
    datalist.replaceChildren();
    chips.replaceChildren();
    for (const user of users) {
      const option = document.createElement("option");
      option.value = user;
      datalist.append(option);
      const chip = document.createElement("button");
      chip.type = "button";
      chip.textContent = user;
      chip.dataset.user = user;
      chip.addEventListener("click", () => pick(user));
      chips.append(chip);
    }
  } catch (error) {
    setStatus("could not read the users: " + error);
  }
}

function pick(user) {
  if (!user) return;
  state.user = user;
  state.list = null;
  state.pending = null;
  $("user").value = user;
  $("title").textContent = "Top-10 for " + user;
  $("meta").textContent = "waiting for a list…";
  $("items").replaceChildren();
  setStatus("");
  history.replaceState(null, "", "#" + encodeURIComponent(user));
  if (state.stream) state.stream.close();
  const stream = new EventSource("/v1/streams/recommendations/" + encodeURIComponent(user));
  stream.addEventListener("list", (event) => render(JSON.parse(event.data)));
  stream.onopen = () => connected(true);
  stream.onerror = () => connected(false);
  state.stream = stream;
  fetch("/v1/recommendations/" + encodeURIComponent(user)).then((response) => {
    if (response.status === 404 && state.user === user && !state.list) {
      $("meta").textContent = "no list yet for " + user + " (unknown user, or no event yet): " +
        "click nothing, wait, or send an event";
    }
  });
}

function render(message) {
  const previous = state.list;
  const before = new Set(previous ? previous.items.map((entry) => entry.item_id) : []);
  state.list = message;
  const top = message.items.length ? Math.max(...message.items.map((e) => Math.abs(e.score))) : 1;
  const rows = message.items.map((entry, index) => {
    const row = document.createElement("li");
    row.dataset.item = entry.item_id;
    if (previous && !before.has(entry.item_id)) row.classList.add("new");
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = String(index + 1);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "item";
    button.textContent = entry.item_id;
    button.title = "send a click on " + entry.item_id + " as " + message.user_id;
    button.addEventListener("click", () => sendClick(entry.item_id, row));
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = Math.max(2, (100 * Math.abs(entry.score)) / (top || 1)).toFixed(1) + "%";
    bar.append(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = entry.score.toFixed(3);
    row.append(rank, button, bar, score);
    return row;
  });
  $("items").replaceChildren(...rows);
  const lag = message.generated_at - message.event_ts;
  $("meta").textContent = "version " + message.version + " · model " + message.model +
    " · published " + new Date(message.generated_at * 1000).toLocaleTimeString() +
    (message.event_ts > 0 ? ", " + lag.toFixed(2) + " s after its newest event" : "");
  $("meta").dataset.version = String(message.version);
  const pending = state.pending;
  if (pending && message.version > pending.version) {
    const seconds = (performance.now() - pending.sentAt) / 1000;
    const gone = !message.items.some((entry) => entry.item_id === pending.item);
    setStatus("click on " + pending.item + " → new list (version " + message.version + ") " +
      seconds.toFixed(2) + " s later" + (gone ? "; " + pending.item + " left the list" : ""));
    state.pending = null;
  }
}

async function sendClick(item, row) {
  if (!state.user || !state.list) return;
  const event = { event_id: eventId(), type: "click", user_id: state.user, item_id: item,
    ts: Date.now() / 1000 };
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("stream-rec-token");
  if (token) headers.Authorization = "Bearer " + token;
  row.classList.add("clicked");
  state.pending = { item, version: state.list.version, sentAt: performance.now() };
  setStatus("sending a click on " + item + "…");
  const response = await fetch("/v1/events", { method: "POST", headers, body: JSON.stringify(event) });
  if (response.status === 202) {
    setStatus("click on " + item + " accepted; waiting for the next list…");
    return;
  }
  state.pending = null;
  row.classList.remove("clicked");
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) $("auth").open = true;
  setStatus("the click was refused (" + response.status + "): " + (answer.detail || ""));
}

function connected(on) {
  const badge = $("connection");
  badge.textContent = on ? "live" : "reconnecting…";
  badge.className = "badge " + (on ? "on" : "off");
}

function format(value, digits, unit) {
  if (value === null || value === undefined) return "–";
  return value.toFixed(digits) + (unit || "");
}

function takePoints(points) {
  state.points.push(...points);
  const newest = state.points.length ? state.points[state.points.length - 1].t : 0;
  state.points = state.points.filter((point) => point.t >= newest - HISTORY_S);
  const last = state.points[state.points.length - 1];
  if (last) {
    $("eps").textContent = format(last.events_per_s, 0);
    $("p50").textContent = format(last.freshness_p50_s === null ? null : last.freshness_p50_s * 1000, 0, " ms");
    $("p99").textContent = format(last.freshness_p99_s === null ? null : last.freshness_p99_s * 1000, 0, " ms");
    $("hit").textContent = format(last.hit_ratio, 3);
    $("applied").textContent = "· " + last.applied_events.toLocaleString() + " events applied";
  }
  drawChart();
}

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const points = state.points;
  const pad = { left: 40, right: 40, top: 10, bottom: 20 };
  const w = width - pad.left - pad.right, h = height - pad.top - pad.bottom;
  ctx.strokeStyle = "#e3e6ec";
  ctx.fillStyle = "#6b7385";
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeRect(pad.left, pad.top, w, h);
  if (points.length < 2) {
    ctx.fillText("waiting for the worker's metric snapshots…", pad.left + 10, pad.top + 20);
    return;
  }
  const t1 = points[points.length - 1].t, t0 = Math.max(points[0].t, t1 - HISTORY_S);
  const x = (t) => pad.left + (w * (t - t0)) / Math.max(1, t1 - t0);
  const series = [
    { key: "events_per_s", color: "#2f6fed", side: "left", scale: 1, digits: 0 },
    { key: "freshness_p99_s", color: "#d9822b", side: "right", scale: 1, digits: 2 },
  ];
  for (const s of series) {
    const values = points.map((p) => p[s.key]).filter((v) => v !== null && v !== undefined);
    const top = Math.max(1e-9, ...values) * 1.15;
    const y = (v) => pad.top + h - (h * v) / top;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const p of points) {
      const v = p[s.key];
      if (v === null || v === undefined) continue;
      if (started) ctx.lineTo(x(p.t), y(v)); else ctx.moveTo(x(p.t), y(v));
      started = true;
    }
    ctx.stroke();
    ctx.fillStyle = s.color;
    const label = top.toFixed(s.digits);
    ctx.fillText(label, s.side === "left" ? 4 : pad.left + w + 4, pad.top + 10);
    ctx.fillText("0", s.side === "left" ? 4 : pad.left + w + 4, pad.top + h);
  }
  ctx.fillStyle = "#6b7385";
  const span = t1 - t0;
  const ago = span < 120 ? Math.round(span) + " s" : (span / 60).toFixed(1) + " min";
  ctx.fillText("−" + ago, pad.left, height - 5);
  ctx.fillText("now", pad.left + w - 20, height - 5);
}

function startPanel() {
  const stream = new EventSource("/v1/streams/metrics");
  stream.addEventListener("points", (event) => takePoints(JSON.parse(event.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  $("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    pick($("user").value.trim());
  });
  $("token").value = sessionStorage.getItem("stream-rec-token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("stream-rec-token", $("token").value));
  window.addEventListener("resize", drawChart);
  loadUsers();
  setInterval(loadUsers, 10000);
  startPanel();
  drawChart();
  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (fromHash) pick(fromHash);
});
