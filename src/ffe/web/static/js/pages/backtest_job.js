// One backtest job: status and progress until it ends, then its statistics, equity, trades
// (a table, and arrows on the price chart), returns by month and day, and its report.
import {
  $, API, ApiError, canTrade, cancelJob, el, fillSelect, fillTable, fmtMoney, fmtPct,
  fmtSigned, fmtStat, fmtTime, getJson, labelOf, listText, num, onStream, paramList, showError,
  showWaiting, startPage, stateBadge,
} from "../app.js";
import { dailyCalendars, monthlyTable, yearsOf } from "../calendar.js";
import { addBenchmark, equityChart, tradesChart } from "../charts.js";
import { tradeCells } from "../trades.js";

const jobId = $("job").dataset.jobId;
const ENDED = new Set(["finished", "failed", "cancelled"]);
const SHOWN = [
  "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "n_trades",
  "exposure", "buy_and_hold_return", "final_equity", "commissions",
];
let shownResult = false;

function fact(label, value) {
  if (value instanceof Node) return el("div", { class: "wide" }, el("dt", {}, label), el("dd", {}, value));
  return el("div", {}, el("dt", {}, label), el("dd", { title: String(value) }, value));
}

function symbolsFact(symbols) {
  const { text, full } = listText(symbols);
  return el("div", {}, el("dt", {}, "Symbols"), el("dd", { title: full }, text || "—"));
}

function renderJob(job) {
  stateBadge($("job-status"), job.status);
  $("cancel-job").hidden = !canTrade || ENDED.has(job.status);
  const progress = Math.max(0, Math.min(1, job.progress ?? 0));
  $("job-progress").value = progress;
  $("job-progress").setAttribute("aria-valuenow", String(Math.round(progress * 100)));
  $("job-progress-label").textContent = `${Math.round(progress * 100)}%`;
  const p = job.payload || {};
  const facts = [
    fact("Strategy", p.strategy || "—"),
    symbolsFact((p.symbols || [p.symbol]).filter(Boolean)),
    fact("Parameters", paramList(p.params, { testid: "job-params" })),
    fact("Period", `${p.start || "first bar"} → ${p.end || "last bar"}`),
    fact("Cash", p.cash ? fmtMoney(p.cash) : "as configured"),
    fact("Commission", p.commission ?? "as configured"),
    fact("Created", fmtTime(job.created_at)),
    fact("Finished", fmtTime(job.finished_at)),
  ];
  if (job.run_id) facts.push(el("div", {}, el("dt", {}, "Run"), el("dd", {}, el("a", { href: `/decisions?run_id=${encodeURIComponent(job.run_id)}` }, job.run_id))));
  $("job-facts").replaceChildren(...facts);
  showWaiting($("job-waiting"), job);
  $("job-error").hidden = !job.error;
  const ended = job.status === "cancelled" ? "The backtest was stopped" : "The backtest failed";
  $("job-error").textContent = job.error ? `${ended}: ${job.error}` : "";
  if (job.status === "finished" && !shownResult) {
    shownResult = true;
    showResult(job).catch(showError);
  }
}

async function showResult(job) {
  $("result").hidden = false;
  const stats = (job.result && job.result.stats) || {};
  $("job-stats").replaceChildren(...SHOWN.filter((k) => k in stats).map((name) => {
    const value = stats[name];
    const cls = /return|cagr/.test(name) && typeof value === "number" ? (value >= 0 ? "up" : "down") : "";
    return el("div", { class: "stat" },
      el("span", { class: "stat-label" }, labelOf(name)),
      el("span", { class: `stat-value ${cls}`, "data-testid": `stat-${name}` }, fmtStat(name, value)));
  }));
  const report = $("open-report");
  const link = $("report-link");
  if (!job.run_id) {
    report.hidden = link.hidden = true;
    return;
  }
  const url = `${API}/runs/${encodeURIComponent(job.run_id)}/report`;
  link.href = url;
  report.addEventListener("click", () => {
    const frame = $("report-frame");
    if (!frame.getAttribute("src")) frame.src = url; // the report is large: load it on demand
    frame.hidden = !frame.hidden;
    report.textContent = frame.hidden ? "Show report" : "Hide report";
    if (!frame.hidden) frame.scrollIntoView({ behavior: "smooth", block: "start" });
  });
  const equity = await getJson(`/runs/${encodeURIComponent(job.run_id)}/equity`, { limit: 5000 });
  const chart = equityChart($("run-equity-chart"));
  chart.setData(equity.points || []);
  addBenchmark(chart, equity.points, equity.benchmark);
  await Promise.all([showTrades(job.run_id), showReturns(job.run_id)]);
}

// -- trades: the table and the arrows on the price chart ----------------------------------------

const PER_PAGE = 50;
const MOST = 5000; // round trips read for the table and chart; the API pages the rest

async function roundTrips(runId) {
  const items = [];
  let page = { total: 0, source: "fills" };
  do {
    page = await getJson(`/runs/${encodeURIComponent(runId)}/trades`, { limit: 1000, offset: items.length });
    items.push(...(page.items || []));
  } while ((page.items || []).length && items.length < page.total && items.length < MOST);
  return { items, total: page.total, source: page.source };
}

function tradeRow(t, index) {
  return el("tr", { "data-testid": "trade-row", "data-status": t.status },
    num(index + 1), ...tradeCells(t, "the last bar"));
}

function pageTrades(items) {
  let at = 0;
  const pages = Math.max(1, Math.ceil(items.length / PER_PAGE));
  const show = () => {
    fillTable("trades-table", items.slice(at * PER_PAGE, (at + 1) * PER_PAGE), (t, i) => tradeRow(t, at * PER_PAGE + i), "No trades");
    $("trades-page").textContent = `page ${at + 1} of ${pages}`;
    $("trades-prev").disabled = at === 0;
    $("trades-next").disabled = at >= pages - 1;
  };
  $("trades-pager").hidden = pages < 2;
  $("trades-prev").addEventListener("click", () => { at = Math.max(0, at - 1); show(); });
  $("trades-next").addEventListener("click", () => { at = Math.min(pages - 1, at + 1); show(); });
  show();
}

const LABELLED = 40; // more arrows than this are drawn without their text, which would pile up

/** A round trip's fills as chart arrows: its entry, and its exit once closed. */
function arrows(t, labelled) {
  const long = t.direction === "long";
  const text = (words) => (labelled ? words : "");
  const found = [{ time: t.entry_time, side: long ? "buy" : "sell", text: text(long ? "Long" : "Short") }];
  if (t.exit_time) found.push({ time: t.exit_time, side: long ? "sell" : "buy", text: text(`Exit ${fmtPct(t.pnl_pct, { sign: true, digits: 1 })}`) });
  return found;
}

async function drawSymbol(chart, runId, symbol, items) {
  const bars = await getJson(`/runs/${encodeURIComponent(runId)}/bars`, { symbol, limit: 5000 });
  chart.setBars(bars.bars || []);
  const mine = items.filter((t) => t.symbol === symbol);
  const drawn = chart.setTrades(mine.flatMap((t) => arrows(t, mine.length * 2 <= LABELLED)));
  // Arrows are drawn on a canvas: say how many, for whoever checks the page (tests, tools).
  $("trades-chart").dataset.markers = String(drawn);
}

async function showTrades(runId) {
  const [run, found] = await Promise.all([getJson(`/runs/${encodeURIComponent(runId)}`), roundTrips(runId)]);
  const { items, total, source } = found;
  $("trades-panel").hidden = false;
  const open = items.filter((t) => t.status === "open").length;
  const net = items.reduce((sum, t) => sum + (t.pnl ?? 0), 0);
  $("trades-summary").textContent = `${total} round trips${open ? ` (${open} open, * unrealised at the last bar)` : ""} · net ${fmtSigned(net)}`;
  const notes = [];
  if (source === "trades") notes.push("This run was recorded before its fills were: its trades are its closed lots; what was still open at the end is not known.");
  if (items.length < total) notes.push(`Showing the first ${items.length} of ${total} round trips; the API pages them all (/runs/{id}/trades).`);
  $("trades-note").hidden = !notes.length;
  $("trades-note").textContent = notes.join(" ");
  pageTrades(items);
  const symbols = run.symbols || [];
  if (!symbols.length) return;
  const counts = (s) => items.filter((t) => t.symbol === s).length;
  const busiest = [...symbols].sort((a, b) => counts(b) - counts(a))[0];
  const select = $("chart-symbol");
  fillSelect(select, symbols.map((s) => ({ value: s, label: `${s} (${counts(s)} trades)` })), busiest);
  $("chart-symbol-label").hidden = symbols.length < 2;
  const chart = tradesChart($("trades-chart"));
  select.addEventListener("change", () => drawSymbol(chart, runId, select.value, items).catch(showError));
  await drawSymbol(chart, runId, busiest, items).catch(showError);
}

// -- returns by month and by day ---------------------------------------------------------------

async function showReturns(runId) {
  const returns = await getJson(`/runs/${encodeURIComponent(runId)}/returns`);
  if (!(returns.monthly || []).length) return;
  $("returns-panel").hidden = false;
  $("monthly-returns").replaceChildren(monthlyTable(returns));
  const years = yearsOf(returns);
  const select = $("daily-year");
  fillSelect(select, years.map((y) => ({ value: y })), years[0]);
  const showYear = () => $("daily-returns").replaceChildren(...dailyCalendars(returns, select.value));
  select.addEventListener("change", showYear);
  showYear();
}

startPage(async () => {
  $("cancel-job").addEventListener("click", (event) =>
    cancelJob(event.currentTarget, jobId, { what: "backtest", cancelled: renderJob }),
  );
  let job;
  try {
    job = await getJson(`/jobs/${encodeURIComponent(jobId)}`);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 422)) {
      stateBadge($("job-status"), "unknown");
      $("job-error").textContent = `There is no backtest job ${jobId}.`;
      $("job-error").hidden = false;
      return;
    }
    throw error;
  }
  renderJob(job);
  onStream("job", (data) => { if (data.id === jobId) renderJob(data); });
  // Progress is not pushed while a job runs, so poll until it ends.
  while (!ENDED.has(job.status)) {
    await new Promise((resolve) => setTimeout(resolve, document.hidden ? 5000 : 1000));
    try {
      job = await getJson(`/jobs/${encodeURIComponent(jobId)}`);
      renderJob(job);
    } catch (error) {
      showError(error);
    }
  }
});
