// Backtests: submit one (then follow it on its own page), recent jobs, and two runs compared.
import {
  $, betterClass, busy, canTrade, el, every, fillSelect, fillTable, fmtStat, fmtTime, getJson, jobState,
  labelOf, marketSymbols, num, onStream, paramInputs, paramList, postJson, readParams, showError, startPage,
  symbolsCell, td,
} from "../app.js";
import { compareChart } from "../charts.js";

const short = (id) => (id ? String(id).slice(0, 8) : "—");
const ACTIVE = new Set(["queued", "running"]);

// -- the form ----------------------------------------------------------------------------------

async function setupForm() {
  const form = $("backtest-form");
  const [all, symbols, defaults] = await Promise.all([
    getJson("/strategies").then((d) => d.items || []), marketSymbols(), getJson("/backtests/defaults"),
  ]);
  // The server's own defaults (its backtest settings), so the form starts from what a run
  // with nothing changed would use.
  for (const name of ["cash", "commission", "slippage_bps"]) form[name].value = defaults[name];
  fillSelect(form.strategy, all.map((s) => ({ value: s.name })), "sma_cross");
  const names = symbols.map((s) => s.symbol);
  fillSelect(form.symbol, symbols.map((s) => ({ value: s.symbol, label: `${s.symbol} · ${s.timeframe} · ${s.bars} bars` })), names.includes("SP500") ? "SP500" : names[0]);
  const showParams = () => paramInputs($("backtest-params"), all.find((s) => s.name === form.strategy.value)?.params);
  const showRange = () => {
    const entry = symbols.find((s) => s.symbol === form.symbol.value);
    for (const input of [form.start, form.end]) {
      input.min = entry?.first?.slice(0, 10) || "";
      input.max = entry?.last?.slice(0, 10) || "";
    }
    form.start.placeholder = dateOf(entry?.first);
    form.end.placeholder = dateOf(entry?.last);
  };
  showParams();
  showRange();
  form.strategy.addEventListener("change", showParams);
  form.symbol.addEventListener("change", showRange);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(event.submitter || form.querySelector("[type=submit]"), async () => {
      const job = await postJson("/backtests", requestOf(form));
      location.assign(`/backtests/${encodeURIComponent(job.id)}`);
    });
  });
}

const dateOf = (iso) => (iso ? iso.slice(0, 10) : "");

function requestOf(form) {
  const body = { strategy: form.strategy.value, symbols: [form.symbol.value], params: readParams(form) };
  if (form.cash.value) body.cash = Number(form.cash.value);
  if (form.commission.value) body.commission = Number(form.commission.value);
  if (form.slippage_bps.value) body.slippage_bps = Number(form.slippage_bps.value);
  if (form.start.value) body.start = form.start.value;
  if (form.end.value) body.end = form.end.value;
  return body;
}

// -- jobs --------------------------------------------------------------------------------------

function jobRow(job) {
  const payload = job.payload || {};
  const link = `/backtests/${encodeURIComponent(job.id)}`;
  return el("tr", {},
    el("td", {}, el("a", { href: link }, short(job.id))),
    td(fmtTime(job.created_at)), td(payload.strategy || "—"), symbolsCell(payload.symbols || [payload.symbol].filter(Boolean)),
    el("td", {}, jobState(job)),
    el("td", {}, el("progress", { max: 1, value: job.progress ?? 0 })),
    el("td", { class: "actions" }, el("a", { class: "btn small ghost", href: link }, job.status === "finished" ? "Result" : "Follow")));
}

let jobsActive = false;
async function loadJobs() {
  const page = await getJson("/backtests", { limit: 15 });
  const items = page.items || [];
  fillTable("jobs-table", items, jobRow, "No backtests yet");
  jobsActive = items.some((j) => ACTIVE.has(j.status));
}

// -- runs and compare --------------------------------------------------------------------------

const picked = [];

function runRow(run) {
  const s = run.stats || {};
  const box = el("input", { type: "checkbox", "aria-label": `Compare run ${run.id}`, "data-run": run.id, "data-testid": `pick-${run.id}` });
  box.checked = picked.includes(run.id);
  box.addEventListener("change", () => pick(run.id, box.checked));
  return el("tr", {},
    el("td", {}, box), td(short(run.id)), td(run.strategy || "—"), symbolsCell(run.symbols),
    td(fmtTime(run.finished_at)), num(fmtStat("total_return", s.total_return)), num(fmtStat("sharpe", s.sharpe)),
    num(fmtStat("max_drawdown", s.max_drawdown)), num(fmtStat("n_trades", s.n_trades)));
}

function pick(id, on) {
  const at = picked.indexOf(id);
  if (on && at < 0) picked.push(id);
  if (!on && at >= 0) picked.splice(at, 1);
  while (picked.length > 2) picked.shift();
  for (const box of $("runs-table").querySelectorAll("input[type=checkbox]")) {
    box.checked = picked.includes(box.dataset.run);
  }
  $("compare").disabled = picked.length !== 2;
}

async function loadRuns() {
  const page = await getJson("/runs", { kind: "backtest", limit: 50 });
  fillTable("runs-table", (page.items || []).filter((r) => r.stats), runRow, "No finished runs yet");
}

/** The compare endpoint's stats as rows, whether a list of {name, a, b, diff} or a mapping. */
function statRows(stats) {
  if (Array.isArray(stats)) return stats;
  return Object.entries(stats || {}).map(([name, v]) => ({ name, ...v }));
}

let chart = null;
async function compare() {
  const [a, b] = picked;
  const [found, ea, eb] = await Promise.all([
    getJson("/runs/compare", { a, b }),
    getJson(`/runs/${a}/equity`, { limit: 5000 }),
    getJson(`/runs/${b}/equity`, { limit: 5000 }),
  ]);
  $("compare-result").hidden = false;
  chart ??= compareChart($("compare-chart"));
  chart.setData(ea.points || [], eb.points || []);
  const name = (r, fallback) => `${short(r?.id || fallback)} ${r?.strategy || ""}`;
  $("compare-legend").replaceChildren(
    el("span", {}, el("i", { class: "swatch sw-a" }), `A ${name(found.a, a)}`),
    el("span", {}, el("i", { class: "swatch sw-b" }), `B ${name(found.b, b)}`));
  // Each run's settings as "key: value" lines (long symbol lists shortened), never raw JSON:
  // a 100-symbol run or a long parameter must not widen the page.
  const settings = (r, label) => el("div", { class: "compare-run" },
    el("h3", {}, `${label} ${name(r, "")}`),
    paramList({ symbols: r?.symbols || [], ...(r?.params || {}) }, { testid: `compare-params-${label.toLowerCase()}` }));
  $("compare-params").replaceChildren(settings(found.a, "A"), settings(found.b, "B"));
  fillTable("compare-table", statRows(found.stats).filter((r) => !/^(start|end)$/.test(r.name)), (r) => el("tr", {},
    td(labelOf(r.name)), num(fmtStat(r.name, r.a)), num(fmtStat(r.name, r.b)),
    num(r.diff === null || r.diff === undefined ? "—" : fmtStat(r.name, r.diff), betterClass(r.name, r.diff))), "No statistics");
  $("compare-result").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

startPage(async () => {
  $("compare").addEventListener("click", (e) => busy(e.currentTarget, compare));
  await Promise.all([canTrade ? setupForm() : null, loadJobs(), loadRuns()]);
  onStream("job", (job) => {
    if (job.kind !== "backtest") return;
    loadJobs().catch(showError);
    if (job.status === "finished") loadRuns().catch(showError);
  });
  // Without the stream, poll while something runs.
  every(3000, async () => { if (jobsActive) await loadJobs(); }, false);
});
