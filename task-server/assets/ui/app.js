// crpc dashboard: plain DOM, polling the server's JSON API with the bearer token kept in this
// tab's sessionStorage. Every value from the server goes through textContent, never HTML.
"use strict";

const TOKEN_KEY = "crpc.token";
const POLL_MS = 1500;
const STATES = ["waiting", "queued", "leased", "succeeded", "failed", "cancelled"];
let detailId = null;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return v.toFixed(3) + " ms";
  if (v < 1000) return v.toFixed(v < 10 ? 1 : 0) + " ms";
  return (v / 1000).toFixed(v < 10000 ? 2 : 1) + " s";
}

function secs(v) {
  if (v === null || v === undefined) return "no live slot";
  if (v < 60) return v.toFixed(1) + " s";
  if (v < 3600) return (v / 60).toFixed(1) + " min";
  return (v / 3600).toFixed(1) + " h";
}

function when(t) {
  return t ? new Date(t).toLocaleTimeString() : "–";
}

function status(text) {
  $("status").textContent = text || "";
  $("status").hidden = !text;
}

class HttpError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e ? `${e.message} (${status} ${e.code})` : `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token, Accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new HttpError(r.status, body);
  return body;
}

// Who the token says it is (display only: the server checks it on every request).
function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch (_) {
    return {};
  }
}

function taskLink(id, text) {
  return el("a", { href: "#task=" + id, "data-task": id }, text || id.slice(0, 8) + "…" + id.slice(-4));
}

// ---- views -----------------------------------------------------------------------------

function renderStates(summary) {
  $("states").replaceChildren(
    ...STATES.map((s) => el("div", { class: "tile state-" + s, id: "state-" + s }, el("b", {}, summary.counts[s] || 0), s)),
    el("div", { class: "tile", id: "state-total" }, el("b", {}, summary.total), "total"),
  );
}

function renderEstimate(est) {
  const eta = est.eta_s === null || est.eta_s === undefined
    ? "no live processor slot to run it"
    : `ends in ${secs(est.eta_s)} (80 % of queues end between ${secs(est.eta_p10_s)} and ${secs(est.eta_p90_s)})`;
  $("eta").textContent = `Queue: ${est.queued} queued, ${est.running} running, ${est.waiting || 0} waiting, ${secs(est.time)} of work; ${eta}.`;
  fill($("backlog").tBodies[0], (est.backlog || []).map((b) =>
    el("tr", {}, el("td", {}, b.class), el("td", {}, b.queued), el("td", {}, b.running), el("td", {}, b.slots),
      el("td", {}, b.backlog_s === null ? (b.queued + b.running ? "no live slot" : "–") : secs(b.backlog_s)))));
}

async function renderBatches(list) {
  $("no-batches").hidden = list.batches.length > 0;
  const rows = [];
  for (const b of list.batches) {
    let eta = "done";
    if (!b.done) {
      const s = await api(`/user/batches/${b.batch_id}`);
      eta = secs(s.eta_s);
    }
    const bar = el("progress", { id: "batch-" + b.batch_id, max: b.total, value: b.finished });
    rows.push(el("tr", { "data-batch": b.batch_id },
      el("td", { class: "mono" }, b.batch_id.slice(0, 8) + "…"),
      el("td", {}, bar, " ", el("span", { class: "batch-count" }, `${b.finished}/${b.total}`)),
      el("td", {}, b.counts.succeeded), el("td", {}, b.counts.failed + b.counts.cancelled),
      el("td", { class: "batch-eta" }, eta), el("td", {}, when(b.created_at))));
  }
  fill($("batches").tBodies[0], rows);
}

function renderWorkers(workers, leased) {
  const byWorker = new Map();
  for (const t of leased.tasks) {
    const w = t.lease && t.lease.worker_id;
    if (!w) continue;
    if (!byWorker.has(w)) byWorker.set(w, []);
    byWorker.get(w).push(t);
  }
  $("no-workers").hidden = workers.workers.length > 0;
  $("workers").replaceChildren(...workers.workers.map((w) => {
    const tasks = byWorker.get(w.worker_id) || [];
    const slots = [];
    for (let i = 0; i < w.slots; i++) {
      const t = tasks[i];
      slots.push(t
        ? el("div", { class: "slot busy" }, taskLink(t.id, t.function), ` ${Math.round(t.progress || 0)} %`)
        : el("div", { class: "slot" + (i < w.running ? " busy" : "") }, i < w.running ? "busy" : "idle"));
    }
    const caps = w.capabilities || {};
    const gpus = (caps.gpus || []).length;
    return el("div", { class: "worker" + (w.live ? "" : " dead"), "data-worker": w.worker_id },
      el("b", {}, w.worker_id), ` ${w.live ? "live" : "not heard from lately"} · ${w.slots} slot(s)`,
      gpus ? ` · ${gpus} GPU(s)` : "", ` · ${w.running} running`,
      w.speed ? ` · speed ${w.speed.toFixed(2)}` : "", ` · last seen ${when(w.last_seen)}`,
      el("div", { class: "slots" }, ...slots));
  }));
}

// A runtime histogram: one bar per log-spaced bin, height ∝ count.
function histogram(bins) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const w = 160, h = 36;
  svg.setAttribute("class", "hist");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const max = Math.max(1, ...bins.map((b) => b.count));
  const bw = w / Math.max(1, bins.length);
  bins.forEach((b, i) => {
    const r = document.createElementNS(ns, "rect");
    const bh = Math.max(b.count ? 1 : 0, (b.count / max) * (h - 2));
    r.setAttribute("x", i * bw);
    r.setAttribute("y", h - bh);
    r.setAttribute("width", Math.max(1, bw - 1));
    r.setAttribute("height", bh);
    const t = document.createElementNS(ns, "title");
    t.textContent = `${ms(b.lo_ms)} – ${ms(b.hi_ms)}: ${b.count}`;
    r.append(t);
    svg.append(r);
  });
  const label = el("span", { class: "muted" }, bins.length ? ` ${ms(bins[0].lo_ms)} … ${ms(bins[bins.length - 1].hi_ms)}` : "");
  return el("span", {}, svg, label);
}

function renderFunctions(stats) {
  fill($("functions").tBodies[0], stats.functions.map((f) =>
    el("tr", { "data-function": f.function },
      el("td", { class: "mono" }, `${f.package ? f.package + "@" + f.version + "." : ""}${f.function}`),
      el("td", {}, f.count), el("td", {}, f.failures), el("td", {}, ms(f.mean_ms)),
      el("td", {}, ms(f.p50_ms)), el("td", {}, ms(f.p95_ms)), el("td", {}, histogram(f.histogram || [])))));
}

function renderTasks(list) {
  fill($("tasks").tBodies[0], list.tasks.map((t) =>
    el("tr", { "data-task-row": t.id },
      el("td", { class: "mono" }, taskLink(t.id)), el("td", {}, t.function),
      el("td", { class: "state-" + t.state }, t.state),
      el("td", {}, t.progress === undefined ? "–" : Math.round(t.progress) + " %"),
      el("td", {}, `${t.attempt}/${t.max_attempts}`), el("td", {}, ms(t.runtime_ms)), el("td", {}, when(t.created_at)))));
}

function renderDetail(t) {
  $("detail-id").textContent = t.id;
  const fields = [
    ["function", `${t.package ? t.package + "@" + (t.version || "?") + "." : ""}${t.function}`],
    ["state", t.state],
    ["owner", t.owner],
    ["progress", t.progress === undefined ? "–" : t.progress.toFixed(0) + " %"],
    ["attempt", `${t.attempt} of ${t.max_attempts}` + (t.lost_leases ? ` (${t.lost_leases} lost to stopped processors)` : "")],
    ["priority", t.priority],
    ["submitted", new Date(t.created_at).toLocaleString()],
    ["started", t.lease ? `${new Date(t.lease.leased_at).toLocaleString()} on ${t.lease.worker_id}` : "–"],
    ["finished", t.finished_at ? new Date(t.finished_at).toLocaleString() : "–"],
    ["runtime", ms(t.runtime_ms)],
    ["batch", t.batch_id || "–"],
  ];
  if (t.error) fields.push(["error", `${t.error.kind}: ${t.error.message}`]);
  $("detail-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { id: "detail-" + k }, v)]));
  fill($("attempts").tBodies[0], (t.attempts || []).map((a) =>
    el("tr", { "data-attempt": a.attempt },
      el("td", {}, a.attempt), el("td", {}, a.worker_id || "–"), el("td", {}, when(a.started_at)),
      el("td", {}, a.ended_at ? when(a.ended_at) : "–"),
      el("td", { class: "state-" + a.outcome }, a.outcome + (a.error ? ` (${a.error.kind}: ${a.error.message})` : "")))));
  $("task-args").textContent = JSON.stringify({ args: t.args, kwargs: t.kwargs }, null, 2);
  $("answer-title").textContent = t.state === "succeeded" ? "Answer" : t.error ? "Error" : "Answer (not yet)";
  $("task-answer").textContent = t.state === "succeeded"
    ? JSON.stringify(t.answer === undefined ? null : t.answer, null, 2)
    : t.error ? `${t.error.kind}: ${t.error.message}` : "";
  $("task-detail").hidden = false;
}

// ---- the loop ---------------------------------------------------------------------------

async function refresh() {
  const state = $("task-state").value;
  const [summary, est, batches, workers, leased, stats, tasks] = await Promise.all([
    api("/user/summary"), api("/user/estimate_time_left"), api("/user/batches?limit=10"),
    api("/user/workers"), api("/user/tasks?state=leased&limit=500"), api("/user/stats"),
    api("/user/tasks?limit=50" + (state ? "&state=" + encodeURIComponent(state) : "")),
  ]);
  renderStates(summary);
  renderEstimate(est);
  await renderBatches(batches);
  renderWorkers(workers, leased);
  renderFunctions(stats);
  renderTasks(tasks);
  if (detailId) renderDetail(await api("/user/tasks/" + encodeURIComponent(detailId)));
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function loop() {
  clearTimeout(timer);
  try {
    await refresh();
    status("");
  } catch (e) {
    if (e.status === 401) return signOut("The token was refused: " + e.message);
    status("Cannot refresh: " + e.message);
  }
  timer = setTimeout(loop, POLL_MS);
}

function openFromHash() {
  const m = location.hash.match(/^#task=([0-9a-fA-F-]{36})$/);
  detailId = m ? m[1] : null;
  if (!detailId) $("task-detail").hidden = true;
  if (sessionStorage.getItem(TOKEN_KEY)) loop();
}

function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  const c = claims(token);
  $("who").textContent = c.sub ? `${c.sub} (${c.role})` : "";
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  $("logout").hidden = false;
  loop();
}

function signOut(message) {
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("app-view").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login-view").hidden = false;
  status(message || "");
}

document.addEventListener("DOMContentLoaded", () => {
  for (const s of STATES) $("task-state").append(el("option", { value: s }, s));
  $("task-state").addEventListener("change", loop);
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) signIn(token);
  });
  $("logout").addEventListener("click", () => signOut());
  $("close-detail").addEventListener("click", () => { location.hash = ""; });
  window.addEventListener("hashchange", openFromHash);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token); else signOut();
  openFromHash();
});
