// The mapping step and the fix-rows table: small enhancements of server-rendered forms that
// work without JavaScript (imported by live.js; no build step).

function csrfToken(form) {
  return form.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}


/** Keep a mapping step's preview live: every drop-down change re-renders the step on the
 * server (partial=1) from the stored upload. With `onQueued` (the dashboard), Import queues
 * the job in place and hands it over; elsewhere Import is a normal form post. */
export function setUpMappingStep(step, { onQueued = null } = {}) {
  if (!step) return;
  const form = step.querySelector("form");
  // not form.action: the form's buttons are named "action", which shadows the property
  const url = form.getAttribute("action");
  let pending = null;

  async function post(extra) {
    const data = new FormData(form);
    for (const [k, v] of Object.entries(extra)) data.set(k, v);
    step.setAttribute("aria-busy", "true");
    try {
      return await fetch(url, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(form) },
      });
    } finally {
      step.removeAttribute("aria-busy");
    }
  }

  function replaceWith(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = doc.getElementById("mapping-step");
    if (!fresh) return;
    const node = document.importNode(fresh, true);
    // keep what the person opened (the columns not imported) open
    const wasOpen = step.querySelector("details.unmapped")?.open;
    if (wasOpen) node.querySelector("details.unmapped")?.setAttribute("open", "");
    step.replaceWith(node);
    setUpMappingStep(node, { onQueued });
  }

  form.addEventListener("change", (e) => {
    if (e.target.tagName !== "SELECT") return;
    const extra = { partial: "1", action: "preview" };
    if (e.target.name === "preset") extra.preset_changed = "1";
    const request = (pending = post(extra));
    request.then(async (response) => {
      if (request === pending) replaceWith(await response.text()); // only the latest answer
    });
  });

  if (!onQueued) return;
  form.addEventListener("submit", async (e) => {
    const action = e.submitter?.value || "import";
    e.preventDefault();
    if (action !== "import") {
      replaceWith(await (await post({ partial: "1", action })).text());
      return;
    }
    const response = await post({ action: "import" });
    const match = response.redirected && new URL(response.url).pathname.match(/^\/jobs\/([0-9a-f-]+)\/$/);
    if (!match) {
      replaceWith(await response.text()); // refused: the step says why
      return;
    }
    const job = await fetch(`/api/v1/jobs/${match[1]}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    }).then((r) => r.json());
    step.remove();
    onQueued(job);
  });
}

export function setUpFixTable() {
  // mark the cells a person changed, so they see what the fix job will carry
  for (const input of document.querySelectorAll(".fix-table input[data-original]")) {
    input.addEventListener("input", () => {
      input.classList.toggle("edited", input.value !== input.dataset.original);
    });
  }
}
