// Live progress: poll the pages' JSON twins (/v1/…) and update the numbers in place.
"use strict";

const POLL_MS = 2000;
const ALLOWED = { pause: ["queued", "running"], resume: ["paused"], cancel: ["queued", "running", "paused"],
  extend: ["queued", "running", "paused", "completed"], enqueue: ["queued", "running", "paused"] };

function trialsDone(s) { return (s.trials.COMPLETE || 0) + (s.trials.PRUNED || 0); }
function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "—"; }
function num(x) { return x === null || x === undefined ? "—" : Number(x).toPrecision(4).replace(/\.?0+(e|$)/, "$1"); }

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function showProgress(root, s) {
  const progress = root.querySelector("[data-progress]");
  if (progress) {
    const done = trialsDone(s);
    const share = s.n_trials ? 100 * Math.min(done, s.n_trials) / s.n_trials : 0;
    progress.querySelector(".fill").style.width = share.toFixed(1) + "%";
    progress.querySelector(".label").textContent = done + " / " + s.n_trials;
  }
  const status = root.querySelector("[data-status]");
  if (status) { status.textContent = s.status; status.className = "status " + s.status; }
  const finished = root.querySelector("[data-finished]");
  if (finished) finished.textContent = when(s.finished_at);
}

function pollOverview() {
  setInterval(async () => {
    try {
      const page = await getJSON("/v1/sweeps?limit=50");
      for (const s of page.items) {
        const row = document.querySelector('tr[data-sweep="' + CSS.escape(s.name) + '"]');
        if (row) showProgress(row, s);
      }
    } catch (e) { console.warn(e); }
  }, POLL_MS);
}

function showTop(rows) {
  const body = document.querySelector("tbody[data-top]");
  if (!body) return;
  body.replaceChildren(...rows.map((c) => {
    const tr = document.createElement("tr");
    const fresh = c.fresh_mean === null ? "—"
      : c.fresh_mean.toFixed(4) + (c.fresh_std === null ? "" : " ± " + c.fresh_std.toFixed(4));
    const ci = c.ci95 === null ? "—" : "[" + c.ci95.map((v) => v.toFixed(4)).join(", ") + "]";
    for (const text of [c.number, num(c.params.dropout), num(c.params.weight_decay), c.value.toFixed(4),
      fresh, c.fresh_seeds, ci, Object.values(c.fresh_values).map((v) => v.toFixed(4)).join(", ")]) {
      const td = document.createElement("td");
      td.textContent = String(text);
      tr.append(td);
    }
    return tr;
  }));
}

function swapChart(chart, url) {
  // Load the new chart off-screen first, so the old one stays until the new one is ready.
  const next = new Image();
  next.onload = () => { chart.src = url; };
  next.src = url;
}

function pollSweep(name) {
  const base = "/v1/sweeps/" + encodeURIComponent(name);
  const chart = document.querySelector("[data-chart]");
  let seen = null;
  setInterval(async () => {
    try {
      const s = await getJSON(base);
      showProgress(document, s);
      const counts = document.querySelector("[data-counts]");
      if (counts) counts.textContent = Object.keys(s.trials).sort().map((k) => k + " " + s.trials[k]).join(" · ");
      for (const form of document.querySelectorAll("form[data-action]")) {
        const allowed = ALLOWED[form.dataset.action];
        if (allowed) form.hidden = !allowed.includes(s.status);
      }
      const now = trialsDone(s) + "/" + s.status;
      if (seen !== null && now !== seen) {
        if (chart) swapChart(chart, base + "/chart.png?t=" + Date.now());
        showTop(await getJSON(base + "/top?k=5"));
      }
      seen = now;
    } catch (e) { console.warn(e); }
  }, POLL_MS);
}
