// The BOM page: live enrichment progress (segmented bar, counts, percent), start / re-run in
// place, and resolving an ambiguous line by picking a candidate in place.
//
// As live.js does for jobs: the page embeds the stream cursor taken before its state was read,
// and the stream starts there, so nothing between the render and the connection is lost. Each
// event carries the run's full `state`, so a missed one is repaired by the next. When the run
// ends, the server-rendered line table and totals are fetched again.

const root = document.getElementById("bom-live");
const SEGMENTS = ["matched", "ambiguous", "not_found", "skipped", "error", "pending"];
const TERMINAL = new Set(["enrichment.completed", "enrichment.failed", "job.completed", "job.failed", "job.cancelled"]);
const EVENT_TYPES = [
  "snapshot", "reset", "heartbeat",
  "enrichment.started", "enrichment.progress", "enrichment.completed", "enrichment.failed",
  "job.queued", "job.started", "job.stage", "job.progress", "job.completed", "job.failed", "job.cancelled",
];
const LABELS = { pending: "Pending", queued: "Queued", processing: "Processing", completed: "Completed", failed: "Failed", cancelled: "Cancelled" };
const num = (n) => Number(n ?? 0).toLocaleString("en-US");

function csrf() {
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

function field(name) {
  return root.querySelector(`[data-run="${name}"]`);
}

/** Show a run's `state` (and its job) in the bar, the counts and the progress line. */
function applyState(state, job) {
  if (state && state.total_items !== undefined) {
    const total = state.total_items || 0;
    // A re-run of the unresolved lines leaves the BOM's other lines as they are: the bar and
    // the counts stay the whole BOM's, those lines' (rendered with the page) plus the run's.
    const lines = Number(root.dataset.lineCount || 0);
    const legend = root.querySelector(".legend");
    const partial = lines > total;
    const kept = (s) => (partial ? Number(legend?.dataset[`kept_${s}`] || 0) : 0);
    const counts = {
      matched: kept("matched") + (state.matched || 0), ambiguous: state.ambiguous,
      not_found: state.not_found, skipped: kept("skipped") + (state.skipped || 0),
      error: state.failed_items, pending: Math.max(total - (state.enriched_items || 0), 0),
    };
    const whole = partial ? lines : total;
    for (const s of SEGMENTS) {
      const seg = root.querySelector(`[data-seg="${s}"]`);
      if (seg && whole) {
        seg.style.width = `${(100 * (counts[s] || 0)) / whole}%`;
        seg.title = `${s}: ${counts[s] || 0}`;
      }
      const count = root.querySelector(`[data-count="${s}"]`);
      if (count) count.textContent = num(counts[s]);
    }
    const percent = field("percent");
    // percent_complete never goes down within a run; keep the larger one against reordering
    const shown = Number(percent.dataset.value || -1);
    if (state.percent_complete >= shown || job?.status === "queued") {
      percent.dataset.value = state.percent_complete;
      percent.textContent = `${state.percent_complete}%`;
    }
    field("items").textContent = `${num(state.enriched_items)} / ${num(total)} lines in this run`;
  }
  if (job) {
    const badge = field("status");
    badge.textContent = LABELS[job.status] ?? job.status;
    badge.className = `badge status-${job.status}`;
    const error = field("error");
    error.textContent = job.error_message || "";
    error.hidden = !job.error_message;
    const ended = ["completed", "failed", "cancelled"].includes(job.status);
    const button = document.querySelector("#start-form button");
    if (button) button.disabled = !ended;
    const cancel = document.getElementById("cancel-form");
    if (cancel) {
      cancel.hidden = ended;
      cancel.elements.job.value = job.id;  // the run shown: a start from this page changes it
    }
  }
}

const TOTALS = [".legend", "[data-run=cost]", "[data-run=segbar]"];

/** Replace the totals (and the line table, unless `totalsOnly`) with their current
 *  server-rendered versions. */
async function refresh(totalsOnly = false) {
  const response = await fetch(location.href, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of totalsOnly ? TOTALS : ["#lines", ...TOTALS]) {
    const mine = root.querySelector(selector);
    const theirs = fresh.querySelector(selector);
    if (mine && theirs) mine.replaceWith(document.importNode(theirs, true));
  }
  if (!totalsOnly) setUpResolve();  // the table's forms are new
}

let source = null;
let cursor = root.dataset.cursor || "";

function follow(url) {
  source?.close();
  if (!url) return;
  const target = new URL(url, location.href);
  if (cursor) target.searchParams.set("last_event_id", cursor);
  source = new EventSource(target, { withCredentials: true });
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (e) => {
      if (e.lastEventId) cursor = e.lastEventId;
      if (type === "heartbeat") return;
      const data = JSON.parse(e.data);
      applyState(data.state, data.job);
      if (TERMINAL.has(type) || ["completed", "failed", "cancelled"].includes(data.job?.status)) {
        source.close();
        source = null;
        refresh();
      }
    });
  }
}

function setUpStart() {
  const form = document.getElementById("start-form");
  if (!form) return;
  const error = document.getElementById("start-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = { priority: Number(data.get("priority")) };
    if (data.get("only")) body.only = "unresolved";
    error.hidden = true;
    const response = await fetch(`/api/v1/boms/${root.dataset.bomId}/enrichment/start`, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json", Accept: "application/json",
        "X-CSRFToken": csrf(), "X-Organization": root.dataset.organization,
      },
      body: JSON.stringify(body),
    });
    const json = await response.json().catch(() => ({}));
    if (response.status !== 202) {
      error.textContent = json.detail || `The start was refused (HTTP ${response.status}).`;
      error.hidden = false;
      return;
    }
    // from the snapshot: the log's last event may be the previous run's end, and a stream
    // resumed right after a terminal event answers 204
    cursor = "";
    field("percent").dataset.value = "-1";
    applyState({ percent_complete: 0, total_items: 0, enriched_items: 0 }, json);
    follow(root.dataset.streamUrl);
  });
}

function setUpResolve() {
  for (const form of root.querySelectorAll("form.resolve")) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const data = new FormData(form);
      const line = data.get("line");
      const response = await fetch(`/api/v1/boms/${root.dataset.bomId}/lines/${line}`, {
        method: "PATCH",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json", Accept: "application/json",
          "X-CSRFToken": csrf(), "X-Organization": root.dataset.organization,
        },
        body: JSON.stringify({ component_id: Number(data.get("component")) }),
      });
      const json = await response.json().catch(() => ({}));
      const row = root.querySelector(`tr[data-line-id="${line}"]`);
      if (response.status !== 200) {
        window.alert(json.detail || `The line could not be resolved (HTTP ${response.status}).`);
        return;
      }
      row.className = "line-matched";
      row.querySelector("[data-cell=status]").innerHTML = "";
      const badge = document.createElement("span");
      badge.className = "badge match-matched";
      badge.textContent = "matched";
      const tier = document.createElement("small");
      tier.className = "muted";
      tier.textContent = " manual";
      row.querySelector("[data-cell=status]").append(badge, tier);
      row.querySelector("[data-cell=component]").textContent = `${json.component.mpn} (${json.component.manufacturer})`;
      row.querySelector("[data-cell=lifecycle]").textContent = json.lifecycle;
      row.querySelector("[data-cell=stock]").textContent = num(json.stock);
      row.querySelector("[data-cell=unit_price]").textContent = json.unit_price ? `${json.unit_price} ${json.currency}` : "";
      row.querySelector("[data-cell=extended_price]").textContent = json.extended_price || "";
      row.querySelector("[data-cell=notes]").textContent = [...json.warnings, ...json.notes].join(" · ");
      // the bar, the counts and the total cost follow (a run under way repaints them itself;
      // the table stays as filtered, with the resolved row in place)
      if (!source) refresh(true);
    });
  }
}

if (root) {
  setUpStart();
  setUpResolve();
  if (root.dataset.running) follow(root.dataset.streamUrl);
}
