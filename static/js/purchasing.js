// The purchase-order pages' live part, on top of live.js (which owns the connection and
// dispatches every event as an `intake:event`). Stage bars change at once from `workflow.*`
// events; the server-rendered sections are then fetched again (at most once a second), so
// what the page shows is always what the server would render.

const STAGE_LABELS = {
  parsing: "Parsing", database_save: "Saving", product_drafts: "Product drafts",
  image_attachment: "Images", sync: "Store sync", status_update: "Status", needs_review: "Review",
};
const SEGMENT_STATUS = { started: "running", completed: "completed", skipped: "skipped", waiting: "waiting" };
const MAX_ACTIVITY = 100;
const page = document.querySelector("[data-po-page]")?.dataset.poPage;
const SECTIONS = page === "order"
  ? ["#order-head", "#header-fields", "#lines", "#timeline", "#deliveries"]
  : ["#pipeline", "#active-orders", "#recent-orders"];

function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString("en-GB", { hour12: false });
}

function activityText(type, data) {
  const job = data.job || {};
  const name = job.original_filename || String(job.id || "").slice(0, 8);
  const stage = STAGE_LABELS[data.stage] || data.stage;
  if (type === "workflow.stage") return `${name}: ${stage} — ${data.message || data.status}`;
  if (type === "workflow.completion") return `${name}: done — ${Number(data.lineItems || 0).toLocaleString("en-US")} lines`;
  if (type === "workflow.error") return `${name}: ${stage} failed — ${data.error}`;
  if (type === "job.failed") return `${name}: failed — ${job.error_message || ""}`;
  return `${name}: ${type.split(".").pop()}`;
}

function activityClass(type, data) {
  if (type === "workflow.error" || type === "job.failed") return "act-failed";
  if (type === "workflow.completion" || type === "job.completed") return "act-completed";
  if (data.status === "waiting") return "act-queued";
  return "act-stage";
}

function addActivity(type, data) {
  const list = document.getElementById("po-activity");
  if (!list) return;
  list.querySelector("li.empty")?.remove();
  const li = document.createElement("li");
  li.className = activityClass(type, data);
  const t = document.createElement("time");
  t.dateTime = data.ts;
  t.textContent = clock(data.ts);
  li.append(t, ` ${activityText(type, data)}`);
  list.prepend(li);
  while (list.children.length > MAX_ACTIVITY) list.lastElementChild.remove();
}

function setSegment(poId, stage, status) {
  for (const scope of document.querySelectorAll(`[data-po-id="${CSS.escape(String(poId))}"]`)) {
    const label = scope.querySelector("[data-po-stage]");
    if (label && status === "running") label.textContent = STAGE_LABELS[stage] || stage;
    const seg = scope.querySelector(`[data-segment="${CSS.escape(stage)}"]`);
    if (seg) {
      seg.dataset.status = status;
      seg.title = `${STAGE_LABELS[stage] || stage}: ${status}`;
    }
  }
}

let refreshTimer = null;
let refreshing = false;
function refreshSoon() {
  if (refreshTimer || refreshing) return;
  refreshTimer = setTimeout(refresh, 1000);
}

async function refresh() {
  refreshTimer = null;
  refreshing = true;
  try {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const selector of SECTIONS) {
      const el = document.querySelector(selector);
      const replacement = fresh.querySelector(selector);
      // never replace a review form someone is typing in
      if (el && replacement && !el.contains(document.activeElement)) {
        el.replaceWith(document.importNode(replacement, true));
      }
    }
  } catch {
    // offline: the next event tries again
  } finally {
    refreshing = false;
  }
}

document.addEventListener("intake:event", (e) => {
  const { type, data } = e.detail;
  const job = data.job || {};
  if (type.startsWith("workflow.")) {
    if (type === "workflow.stage") {
      if (data.stage === "needs_review") setSegment(data.poId, "database_save", "waiting");
      else setSegment(data.poId, data.stage, SEGMENT_STATUS[data.status] || data.status);
    }
    if (type === "workflow.error") setSegment(data.poId, data.stage, "failed");
    if (type !== "workflow.progress") {
      if (data.status !== "started") addActivity(type, data);
      refreshSoon();
    }
  } else if (job.kind === "purchase_order" && (type === "job.completed" || type === "job.failed" || type === "job.queued")) {
    if (type !== "job.queued") addActivity(type, data);
    refreshSoon();
  } else if (type === "reset") {
    refreshSoon();
  }
});
