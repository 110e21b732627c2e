// Optimization: submit a parameter sweep, list sweeps, and show one as a heatmap and a ranking;
// list tuning studies and show one's report (Optuna's plots) in a frame.
import {
  $, API, busy, canTrade, cancelJob, el, every, fillSelect, fillTable, fmtStat, fmtTime, getJson, jobState,
  labelOf, marketSymbols, num, onStream, parseValue, postJson, showError, showWaiting, startPage,
  stateBadge, strategies, td, toast,
} from "../app.js";
import { describeDirection, isBetter, rankRows } from "../ranking.js";

const ACTIVE = new Set(["queued", "running"]);
const short = (id) => String(id).slice(0, 8);
let selected = new URLSearchParams(location.search).get("job");
let sweeps = [];

// -- the form ----------------------------------------------------------------------------------

/** Values around a default to start a grid from: half, the default and double. */
function suggest(value) {
  if (typeof value === "boolean") return "true, false";
  if (typeof value !== "number") return String(value ?? "");
  const round = Number.isInteger(value) ? Math.round : (x) => Number(x.toPrecision(3));
  return [...new Set([round(value / 2), value, round(value * 2)])].filter((x) => x !== 0 || value === 0).join(", ");
}

function gridOf(form) {
  const grid = {};
  for (const input of form.querySelectorAll('[name^="grid."]')) {
    const values = input.value.split(",").map(parseValue).filter((v) => v !== null);
    if (values.length) grid[input.name.slice(5)] = values;
  }
  return grid;
}

function showGridSize(form) {
  const sizes = Object.values(gridOf(form)).map((v) => v.length);
  const total = sizes.reduce((a, b) => a * b, sizes.length ? 1 : 0);
  $("grid-size").textContent = total ? `${total} backtests` : "enter at least one value list";
}

async function setupForm() {
  const form = $("sweep-form");
  const [all, symbols] = await Promise.all([strategies(), marketSymbols()]);
  fillSelect(form.strategy, all.map((s) => ({ value: s.name })), "sma_cross");
  const names = symbols.map((s) => s.symbol);
  fillSelect(form.symbol, names.map((value) => ({ value })), names.includes("SP500") ? "SP500" : names[0]);
  const showGrid = () => {
    const box = $("sweep-grid");
    const params = all.find((s) => s.name === form.strategy.value)?.params || {};
    box.replaceChildren(box.querySelector("legend"), ...Object.entries(params).map(([name, value]) =>
      el("label", {}, labelOf(name), el("input", { name: `grid.${name}`, value: suggest(value), "data-testid": `grid-${name}`, placeholder: "e.g. 5, 10, 20" }))));
    showGridSize(form);
  };
  showGrid();
  form.strategy.addEventListener("change", showGrid);
  form.addEventListener("input", () => showGridSize(form));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(event.submitter || form.querySelector("[type=submit]"), async () => {
      const body = { strategy: form.strategy.value, symbol: form.symbol.value, grid: gridOf(form), metric: form.metric.value };
      const job = await postJson("/sweeps", body);
      toast(`Sweep queued: ${Object.keys(body.grid).join(" × ")} on ${body.symbol}`, "ok");
      select(job.id);
      await loadSweeps();
    });
  });
}

// -- the list ----------------------------------------------------------------------------------

function sweepRow(job) {
  const p = job.payload || {};
  const best = job.result?.best;
  return el("tr", { class: job.id === selected ? "clickable selected" : "clickable", onclick: () => select(job.id) },
    el("td", {}, el("a", { href: `?job=${encodeURIComponent(job.id)}`, onclick: (e) => e.preventDefault() }, short(job.id))),
    td(fmtTime(job.created_at)), td(p.strategy || "—"), td(p.symbol || "—"), td(p.metric || "sharpe"),
    el("td", {}, jobState(job)),
    el("td", {}, el("progress", { max: 1, value: job.progress ?? 0 })),
    num(best ? fmtStat(p.metric || "sharpe", best.value) : "—"));
}

async function loadSweeps() {
  const page = await getJson("/sweeps", { limit: 20 });
  sweeps = page.items || [];
  fillTable("sweeps-table", sweeps, sweepRow, "No sweeps yet");
  if (!selected) {
    const first = sweeps.find((j) => j.status === "finished") || sweeps[0];
    if (first) select(first.id);
  }
}

// -- one sweep ---------------------------------------------------------------------------------

let stopPolling = null;

/** Show sweep `id`, polling it until it ends (progress is not pushed while a job runs). */
function select(id) {
  selected = id;
  history.replaceState(null, "", `?job=${encodeURIComponent(id)}`);
  for (const row of $("sweeps-table").tBodies[0].rows) row.classList.toggle("selected", row.querySelector("a")?.textContent === short(id));
  stopPolling?.();
  let stop = null;
  stop = every(1500, async () => {
    let job;
    try {
      job = await getJson(`/jobs/${encodeURIComponent(id)}`);
    } catch (error) {
      stop?.(); // one message, not one every poll
      throw error;
    }
    if (selected !== id) return;
    showSweep(job);
    if (!ACTIVE.has(job.status)) stop?.();
  });
  stopPolling = stop;
}

function showSweep(job) {
  $("sweep-result").hidden = false;
  const p = job.payload || {};
  const direction = describeDirection(job.result?.direction);
  $("sweep-title").textContent = `Sweep ${short(job.id)}: ${p.strategy || ""} on ${p.symbol || ""}, by ${p.metric || "sharpe"}${direction ? ` (${direction})` : ""}`;
  stateBadge($("job-status"), job.status);
  $("cancel-job").hidden = !canTrade || !ACTIVE.has(job.status);
  const progress = Math.max(0, Math.min(1, job.progress ?? 0));
  $("job-progress").value = progress;
  $("job-progress-label").textContent = `${Math.round(progress * 100)}%`;
  $("sweep-progress-row").hidden = job.status === "finished";
  showWaiting($("sweep-waiting"), job);
  $("sweep-error").hidden = !job.error;
  $("sweep-error").textContent = job.error || "";
  const result = job.status === "finished" ? job.result || {} : {};
  drawHeatmap(result);
  rankTable(result);
}

function cancelSweep(button) {
  const id = selected;
  return cancelJob(button, id, {
    what: "sweep",
    alsoStops: ", with its worker processes,",
    async cancelled(job) {
      if (selected === id) showSweep(job);
      await loadSweeps();
    },
  });
}

const sortValues = (values) => [...values].sort((a, b) => (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))));
const key = (v) => JSON.stringify(v);

/** Red (worst) through amber to green (best), light enough everywhere for the cells' dark
 * text to keep a 4.5:1 contrast (the red end is the darkest). */
function heat(t) {
  return `hsl(${Math.round(4 + t * 146)}, 62%, ${Math.round(57 + 5 * Math.sin(t * Math.PI))}%)`;
}

function drawHeatmap(result) {
  const box = $("sweep-heatmap");
  const rows = (result.rows || []).filter((r) => typeof r.value === "number");
  const names = result.params || [];
  if (!rows.length || !names.length) {
    box.replaceChildren(el("p", { class: "muted" }, result.rows ? "No point of the grid gave a value." : "The heatmap appears when the sweep finishes."));
    box.style.gridTemplateColumns = "";
    $("heat-scale").replaceChildren();
    return;
  }
  const [yName, xName] = names.length > 1 ? names : [null, names[0]];
  const xs = sortValues(new Set(rows.map((r) => r.params[xName])));
  const ys = yName ? sortValues(new Set(rows.map((r) => r.params[yName]))) : [null];
  // With more than two parameters, a cell shows the best value over the others.
  const cells = new Map();
  for (const r of rows) {
    const id = `${key(yName ? r.params[yName] : null)}|${key(r.params[xName])}`;
    if (!cells.has(id) || isBetter(r.value, cells.get(id).value, result.direction)) cells.set(id, r);
  }
  const values = [...cells.values()].map((r) => r.value);
  const lo = Math.min(...values), hi = Math.max(...values);
  const [best, worst] = result.direction === "minimize" ? [lo, hi] : [hi, lo];
  const metric = result.metric || "sharpe";
  box.style.gridTemplateColumns = `auto repeat(${xs.length}, minmax(44px, 1fr))`;
  const parts = [el("div", { class: "axis-label" }, yName ? `${yName} ↓ ${xName} →` : `${xName} →`)];
  parts.push(...xs.map((x) => el("div", { class: "head" }, String(x))));
  for (const y of ys) {
    parts.push(el("div", { class: "head" }, y === null ? "" : String(y)));
    for (const x of xs) {
      const r = cells.get(`${key(y)}|${key(x)}`);
      if (!r) { parts.push(el("div", { class: "cell missing" }, "·")); continue; }
      const t = hi > lo ? (r.value - worst) / (best - worst) : 1;
      const cell = el("div", { class: r.value === best ? "cell best" : "cell", title: `${JSON.stringify(r.params)}\n${metric}: ${fmtStat(metric, r.value)}` }, fmtStat(metric, r.value));
      cell.style.background = heat(t);
      parts.push(cell);
    }
  }
  box.replaceChildren(...parts);
  const bar = el("i");
  bar.style.background = `linear-gradient(to top, ${heat(0)}, ${heat(0.5)}, ${heat(1)})`;
  $("heat-scale").replaceChildren(el("span", {}, fmtStat(metric, best)), bar, el("span", {}, fmtStat(metric, worst)));
}

function rankTable(result) {
  const metric = result.metric || "sharpe";
  const rows = rankRows(result.rows || [], result.direction);
  let rank = 0;
  fillTable("sweep-table", rows.slice(0, 200), (r) => {
    const s = r.stats || {};
    rank += 1;
    return el("tr", {},
      num(rank), td(Object.entries(r.params || {}).map(([k, v]) => `${k}=${v}`).join("  ")),
      num(fmtStat(metric, r.value)), num(fmtStat("total_return", s.total_return)), num(fmtStat("sharpe", s.sharpe)),
      num(fmtStat("max_drawdown", s.max_drawdown)), num(fmtStat("n_trades", s.n_trades)));
  }, result.rows ? "No rows" : "The ranking appears when the sweep finishes.");
}

// -- tuning studies ----------------------------------------------------------------------------

function studyCaveats(result) {
  const notes = (result.edges || []).map((name) => `${name} is on the edge of its range: widen it and tune again.`);
  const dsr = result.deflated_sharpe;
  if (dsr && dsr.probability !== null && dsr.probability !== undefined) {
    notes.push(`Deflated Sharpe ratio: ${(dsr.probability * 100).toFixed(0)}% probability of a Sharpe ratio above zero after ${dsr.n_trials} trials.`);
  }
  return notes.join(" ");
}

function showStudy(study) {
  const frame = $("study-frame");
  frame.src = `${API}/tune/studies/${encodeURIComponent(study.name)}/report`;
  frame.hidden = false;
  $("study-caveats").textContent = studyCaveats(study.result || {});
}

function studyRow(study) {
  const metric = study.setup?.metric || "sharpe";
  const trials = Object.values(study.trials || {}).reduce((a, b) => a + b, 0);
  const holdout = study.result?.holdout?.value;
  return el("tr", { class: "clickable", onclick: () => showStudy(study) },
    td(study.name), td(fmtTime(study.created)), td(study.setup?.strategy || "—"), td(metric), num(trials),
    num(study.best_value === null ? "—" : fmtStat(metric, study.best_value)),
    num(holdout === null || holdout === undefined ? "—" : fmtStat(metric, holdout)),
    td(Object.entries(study.best_params || {}).map(([k, v]) => `${k}=${v}`).join("  ")));
}

async function loadStudies() {
  const found = await getJson("/tune/studies");
  fillTable("studies-table", found.items || [], studyRow, "No studies yet: run ffe tune or POST /api/v1/tune");
}

startPage(async () => {
  $("cancel-job").addEventListener("click", (event) => cancelSweep(event.currentTarget));
  if (selected) select(selected);
  await Promise.all([canTrade ? setupForm() : null, loadSweeps(), loadStudies()]);
  onStream("job", (job) => {
    if (job.kind === "tune" && !ACTIVE.has(job.status)) loadStudies().catch(showError);
    if (job.kind !== "sweep") return;
    loadSweeps().catch(showError);
    if (job.id === selected) showSweep(job);
  });
  every(4000, async () => { if (sweeps.some((j) => ACTIVE.has(j.status))) await loadSweeps(); }, false);
});
