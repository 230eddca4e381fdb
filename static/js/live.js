// Intake's one browser module (no build step): keeps server-rendered pages live.
//
// Every page element with `data-stream` gets one EventSource that starts at the page's embedded
// cursor (`data-cursor`), so the stream begins exactly where the HTML ends. Reconnects back off
// (3 s by default, doubling, at most 30 s; reset after a success), 2 missed heartbeats count as a dead
// connection, and after repeated failures the page polls /api/v1/realtime/poll with the same
// cursor every 30 s until streaming works again. Events carry full job snapshots, so applying
// one twice is harmless and a missed one is repaired by the next.

import { setUpFixTable, setUpMappingStep } from "./mapping.js";

const MAX_DELAY_MS = 30000;
const FAILURES_BEFORE_POLLING = 3;
const MAX_ACTIVITY = 100;
const EVENT_TYPES = [
  "snapshot", "reset", "status", "heartbeat",
  "job.queued", "job.started", "job.stage", "job.progress",
  "job.completed", "job.failed", "job.cancelled",
  "workflow.stage", "workflow.progress", "workflow.completion", "workflow.error",
];
const TERMINAL_TYPES = new Set(["job.completed", "job.failed", "job.cancelled"]);
const TERMINAL_STATUSES = new Set(["completed", "failed", "cancelled"]);
const STATUS_LABELS = {
  pending: "Pending", queued: "Queued", processing: "Processing",
  completed: "Completed", failed: "Failed", cancelled: "Cancelled",
};

// ---------------------------------------------------------------- formatting (as templatetags/intake.py)

const num = (n) => Number(n ?? 0).toLocaleString("en-US");
const label = (status) => STATUS_LABELS[status] ?? status;

function duration(value) {
  if (value === null || value === undefined) return "—";
  let s = Math.round(Number(value));
  if (s < 60) return `${s} s`;
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m} min ${s} s`;
  const h = Math.floor(m / 60); m %= 60;
  return `${h} h ${m} min`;
}

function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString("en-GB", { hour12: false });
}

function rowsOf(job) {
  const total = job.total_rows === null || job.total_rows === undefined ? "?" : num(job.total_rows);
  return `${num(job.processed_rows)} / ${total}`;
}

function activityText(type, job) {
  const name = job.original_filename || String(job.id).slice(0, 8);
  if (type === "job.stage") return `${name}: ${job.stage}`;
  if (type === "job.completed") {
    return `${name}: completed — ${num(job.processed_rows)} rows, ${num(job.error_count)} errors`;
  }
  if (type === "job.failed") return `${name}: failed — ${job.error_message || ""}`;
  return `${name}: ${type.replace(/^job\./, "")}`;
}

function setStatusClass(el, status) {
  for (const c of [...el.classList]) if (c.startsWith("status-")) el.classList.remove(c);
  el.classList.add(`status-${status}`);
}

// ---------------------------------------------------------------- applying a job snapshot

function setField(el, field, job) {
  switch (field) {
    case "status":
      el.textContent = label(job.status);
      setStatusClass(el, job.status);
      break;
    case "progress":
      el.setAttribute("aria-valuenow", job.progress);
      el.setAttribute("aria-valuetext", `${job.progress}% (${label(job.status)})`);
      if (el.firstElementChild) el.firstElementChild.style.width = `${job.progress}%`;
      setStatusClass(el, job.status);
      break;
    case "progress_text":
      el.textContent = `${job.progress}%`;
      break;
    case "rows":
      el.textContent = rowsOf(job);
      break;
    case "rows_per_second":
      el.textContent = job.rows_per_second ? `${num(Math.round(job.rows_per_second))} rows/s` : "";
      break;
    case "eta_seconds":
      el.textContent = job.eta_seconds === null || job.eta_seconds === undefined
        ? "" : `${duration(job.eta_seconds)} left`;
      break;
    case "link":
      el.textContent = job.original_filename || job.id;
      el.href = `/jobs/${job.id}/`;
      break;
    case "stages":
      el.replaceChildren(...(job.stages || []).map((s) => {
        const li = document.createElement("li");
        const t = document.createElement("time");
        t.dateTime = s.at;
        t.textContent = clock(s.at);
        li.append(t, ` ${s.stage}`);
        return li;
      }));
      break;
    case "json":
      el.textContent = JSON.stringify(job, null, 2);
      break;
    case "error_message":
      el.textContent = job.error_message || "";
      el.hidden = !job.error_message;
      break;
    default:
      if (field in job) {
        const v = job[field];
        el.textContent = typeof v === "number" ? num(v) : (v ?? "");
      }
  }
}

/** Whether `scope` already shows a newer state of its job than `job`: a snapshot fetched over
 * HTTP can arrive after the stream's later events (the mapping step fetches the job it queued;
 * a small job may have failed meanwhile), and must not put the older state back for good. */
function isOlderThanShown(scope, job) {
  const shown = Date.parse(scope.dataset.updatedAt ?? "");
  const incoming = Date.parse(job.updated_at ?? "");
  return shown > incoming; // either missing (NaN): not comparable, so shown
}

/** Show `job` in every element that belongs to it (`data-job-id`), wherever it is on the page,
 * unless that element shows a newer state of it already. */
function applyJob(job) {
  for (const scope of document.querySelectorAll(`[data-job-id="${CSS.escape(String(job.id))}"]`)) {
    if (isOlderThanShown(scope, job)) continue;
    if (job.updated_at) scope.dataset.updatedAt = job.updated_at;
    if (scope.dataset.status !== undefined) scope.dataset.status = job.status;
    const fields = [...scope.querySelectorAll("[data-field]")];
    if (scope.dataset.field) fields.push(scope);
    for (const el of fields) setField(el, el.dataset.field, job);
    const gated = [...scope.querySelectorAll("[data-show-when]")];
    if (scope.dataset.showWhen) gated.push(scope);
    for (const el of gated) el.hidden = !el.dataset.showWhen.split(" ").includes(job.status);
  }
}

function ensureRow(job) {
  const body = document.getElementById("jobs-body");
  const template = document.getElementById("job-row-template");
  if (!body || !template || body.querySelector(`[data-job-id="${CSS.escape(job.id)}"]`)) return;
  const row = template.content.firstElementChild.cloneNode(true);
  row.dataset.jobId = job.id;
  body.querySelector("tr.empty")?.remove();
  body.prepend(row);
}

function applySummary(summary) {
  for (const el of document.querySelectorAll("[data-summary]")) {
    const v = summary[el.dataset.summary];
    if (v === undefined) continue;
    el.textContent = el.dataset.summary === "avg_duration_seconds" ? duration(v) : num(v);
  }
}

function addActivity(type, job, ts) {
  const list = document.getElementById("activity");
  if (!list) return;
  list.querySelector("li.empty")?.remove();
  const li = document.createElement("li");
  li.className = `act-${type.replace(/^job\./, "")}`;
  const t = document.createElement("time");
  t.dateTime = ts;
  t.textContent = clock(ts);
  li.append(t, ` ${activityText(type, job)}`);
  list.prepend(li);
  while (list.children.length > MAX_ACTIVITY) list.lastElementChild.remove();
}

/** Replace the elements matching `selector` with their current server-rendered version. */
async function refresh(selector) {
  if (!document.querySelector(selector)) return;
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const el of document.querySelectorAll(selector)) {
    const replacement = el.id && fresh.getElementById(el.id);
    if (replacement) el.replaceWith(document.importNode(replacement, true));
  }
}

// ---------------------------------------------------------------- desktop notifications

const me = document.querySelector("[data-user-id]")?.dataset.userId;

function notifyEnd(job) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  if (!me || String(job.created_by) !== me) return;
  const name = job.original_filename || job.id;
  new Notification(`${name}: ${label(job.status)}`, {
    body: `${num(job.processed_rows)} rows, ${num(job.error_count)} errors`,
    tag: job.id,
  });
}

function setUpNotifications() {
  const button = document.getElementById("notify-toggle");
  if (!button || !("Notification" in window) || Notification.permission !== "default") return;
  button.hidden = false;
  // permission is asked for only on a click, never on page load
  button.addEventListener("click", async () => {
    await Notification.requestPermission();
    button.hidden = true;
  });
}

// ---------------------------------------------------------------- events

function handle(type, data) {
  // other modules of a page (static/js/purchasing.js) see every event too
  document.dispatchEvent(new CustomEvent("intake:event", { detail: { type, data } }));
  if (type === "status") return applySummary(data);
  if (data.status && !data.job) { // an organization topic's snapshot or reset
    applySummary(data.status);
    if (type === "reset") refresh("#jobs-body");
    return;
  }
  const job = data.job;
  if (!job) return;
  ensureRow(job);
  applyJob(job);
  if (type.startsWith("job.") && type !== "job.progress") addActivity(type, job, data.ts);
  if (TERMINAL_TYPES.has(type)) notifyEnd(job);
  if (TERMINAL_TYPES.has(type) || type === "reset") refresh("[data-refresh-on-terminal]");
}

// ---------------------------------------------------------------- the connection

const indicator = document.getElementById("conn");
const CONN_TEXT = {
  connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline (polling)",
  ended: "Up to date (job ended)",
};

function setConnection(state) {
  if (!indicator) return;
  indicator.hidden = false;
  indicator.dataset.state = state;
  indicator.className = `conn conn-${state}`;
  indicator.textContent = CONN_TEXT[state];
}

class LiveStream {
  constructor(el) {
    this.url = new URL(el.dataset.stream, location.href);
    this.cursor = el.dataset.cursor || "";
    this.pollTopic = el.dataset.pollTopic;
    this.deadAfter = Number(el.dataset.deadAfterMs) || 30000;
    this.baseDelay = Number(el.dataset.retryMs) || 3000;
    this.pollEvery = Number(el.dataset.pollMs) || 30000;
    this.closeOnTerminal = "closeOnTerminal" in el.dataset;
    // a page rendered for an ended job is already final: its stream would only answer 204
    this.ended = "ended" in el.dataset;
    this.delay = this.baseDelay;
    this.failures = 0;
    this.done = false;
    this.source = null;
  }

  start() {
    setInterval(() => this.watchdog(), 1000);
    if (this.ended) return this.finish();
    setConnection("connecting");
    this.connect();
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.source?.close();
    const url = new URL(this.url);
    if (this.cursor) url.searchParams.set("last_event_id", this.cursor);
    const source = (this.source = new EventSource(url, { withCredentials: true }));
    this.lastSeen = Date.now();
    source.onopen = () => {
      this.failures = 0;
      this.delay = this.baseDelay;
      this.lastSeen = Date.now();
      this.stopPolling();
      setConnection("live");
    };
    source.onerror = () => this.lost();
    for (const type of EVENT_TYPES) source.addEventListener(type, (e) => this.receive(type, e));
  }

  receive(type, event) {
    this.lastSeen = Date.now();
    if (event.lastEventId) this.cursor = event.lastEventId;
    if (type === "heartbeat") return;
    const data = JSON.parse(event.data);
    handle(type, data);
    const ended = TERMINAL_TYPES.has(type) || TERMINAL_STATUSES.has(data.job?.status);
    if (this.closeOnTerminal && ended) this.finish();
  }

  /** The job has ended: its stream closes by design, so stop instead of reconnecting. */
  finish() {
    this.done = true;
    this.source?.close();
    this.source = null;
    this.stopPolling();
    setConnection("ended");
  }

  /** Start again after an action (retry) revived an ended job. */
  revive() {
    if (!this.done) return;
    this.done = false;
    this.connect();
  }

  lost() {
    if (this.done) return;
    this.source?.close();
    this.source = null;
    this.failures += 1;
    if (this.failures >= FAILURES_BEFORE_POLLING) this.startPolling();
    else setConnection("reconnecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
  }

  watchdog() {
    if (this.source && !this.done && Date.now() - this.lastSeen > this.deadAfter) this.lost();
  }

  startPolling() {
    setConnection("offline");
    if (this.pollTimer || !this.pollTopic) return;
    this.poll();
    this.pollTimer = setInterval(() => this.poll(), this.pollEvery);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  async poll() {
    const url = new URL("/api/v1/realtime/poll", location.href);
    url.searchParams.set("topic", this.pollTopic);
    const org = this.url.searchParams.get("organization");
    if (org) url.searchParams.set("organization", org);
    if (this.cursor) url.searchParams.set("after", this.cursor);
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      if (body.reset) refresh("#jobs-body, [data-refresh-on-terminal]");
      for (const event of body.events) {
        this.cursor = event.id;
        handle(event.type, event);
      }
      if (body.cursor) this.cursor = body.cursor;
    } catch {
      // still offline: the next tick tries again
    }
  }
}

// ---------------------------------------------------------------- forms

/** A job queued from the dashboard's mapping step: into the jobs table, live from now on. */
function showQueued(job) {
  ensureRow(job);
  applyJob(job);
}

function csrfToken(form) {
  return form.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

function setUpUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const zone = document.getElementById("dropzone");
  const text = zone.querySelector(".drop-text");
  const error = document.getElementById("upload-error");

  const showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };
  const setBusy = (busy, what) => {
    form.setAttribute("aria-busy", String(busy));
    for (const el of form.querySelectorAll("input, select, button")) el.disabled = busy;
    text.textContent = busy ? `Uploading ${what}…` : text.dataset.idle;
  };

  // The upload is stored as a pending job and its mapping step (server-rendered, the same
  // page a browser without JavaScript gets) opens here, under the form: no reload.
  async function upload(file) {
    const data = new FormData(form);
    data.set("file", file, file.name);
    showError("");
    setBusy(true, file.name);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(form) },
      });
      const html = new DOMParser().parseFromString(await response.text(), "text/html");
      const step = html.getElementById("mapping-step");
      if (!response.ok || !step) {
        const message = html.getElementById("upload-error")?.textContent.trim();
        showError(message || `The upload was refused (HTTP ${response.status}).`);
        return;
      }
      const slot = document.getElementById("mapping-slot");
      slot.replaceChildren(document.importNode(step, true));
      setUpMappingStep(slot.firstElementChild, { onQueued: showQueued });
      slot.scrollIntoView({ block: "nearest" });
      input.value = "";
    } catch {
      showError("The upload did not reach the server; check the connection and try again.");
    } finally {
      setBusy(false);
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.files.length) upload(input.files[0]);
    else showError("Choose a CSV or XLSX file to upload.");
  });
  input.addEventListener("change", () => {
    if (input.files.length) upload(input.files[0]);
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (e) => {
      e.preventDefault();
      zone.classList.add("dragover");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragover");
    const file = e.dataTransfer?.files?.[0];
    if (file) upload(file);
  });
}

function setUpActions(streams) {
  // Cancel / retry / confirm buttons post in place; a retried job's stream starts again.
  for (const form of document.querySelectorAll("form[data-show-when]")) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        const response = await fetch(form.action, {
          method: "POST",
          body: new FormData(form),
          credentials: "same-origin",
          headers: { "X-CSRFToken": csrfToken(form) },
        });
        if (response.redirected && !response.url.startsWith(location.href.split("?")[0])) {
          location.assign(response.url); // confirm: the real import is a new job with its own page
          return;
        }
        for (const s of streams) s.revive();
      } finally {
        button.disabled = false;
      }
    });
  }
}

// ---------------------------------------------------------------- start

for (const el of document.querySelectorAll("time[datetime]")) el.textContent = clock(el.dateTime);
const streams = [...document.querySelectorAll("[data-stream]")].map((el) => new LiveStream(el));
for (const s of streams) s.start();
setUpUpload();
setUpMappingStep(document.getElementById("mapping-step"));
setUpFixTable();
setUpActions(streams);
setUpNotifications();
