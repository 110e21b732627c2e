// One backtest job: status and progress until it ends, then its statistics, equity and report.
import {
  $, API, ApiError, canTrade, cancelJob, el, fmtMoney, fmtStat, fmtTime, getJson,
  labelOf, onStream, showError, showWaiting, startPage, stateBadge,
} from "../app.js";
import { addBenchmark, equityChart } from "../charts.js";

const jobId = $("job").dataset.jobId;
const ENDED = new Set(["finished", "failed", "cancelled"]);
const SHOWN = [
  "total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "n_trades",
  "exposure", "buy_and_hold_return", "final_equity", "commissions",
];
let shownResult = false;

function fact(label, value) {
  return el("div", {}, el("dt", {}, label), el("dd", { title: String(value) }, value));
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
    fact("Symbols", (p.symbols || [p.symbol]).filter(Boolean).join(", ") || "—"),
    fact("Parameters", Object.keys(p.params || {}).length ? JSON.stringify(p.params) : "defaults"),
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
