// Analysis: a symbol's candles with the forecast's bands, its indicators and the current call.
import {
  $, actionBadge, api, el, fillSelect, fillTable, fmtMoney, fmtNum, fmtPct, fmtTarget, fmtTime, getJson, isNum,
  marketSymbols, num, setText, showError, signClass, startPage, td,
} from "../app.js";
import { candleChart } from "../charts.js";

let chart = null;
let generation = 0; // a newer symbol choice abandons the older one's polling

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** GET /analysis/{symbol}, waiting out 202 "computing" answers as Retry-After says. */
async function analysisOf(symbol, mine) {
  for (let attempt = 0; attempt < 90; attempt += 1) {
    const { status, data, headers } = await api(`/analysis/${encodeURIComponent(symbol)}`);
    if (mine !== generation) return null;
    if (status !== 202) return data;
    // The server says who computes it: this API, or the pre-compute service beside it.
    setText("analysis-status", (data && data.detail) || "computing the forecast…");
    const wait = Number(headers.get("Retry-After"));
    await sleep(1000 * (Number.isFinite(wait) && wait > 0 ? Math.min(wait, 10) : 2));
  }
  throw new Error(`The analysis of ${symbol} is taking too long; try again later.`);
}

function showIndicators(a) {
  const i = a.indicators || {};
  setText("an-price", fmtMoney(a.price));
  setText("an-sma20", fmtMoney(i.sma20));
  setText("an-sma50", fmtMoney(i.sma50));
  setText("an-rsi14", fmtNum(i.rsi14, 1));
  setText("an-vol20", fmtPct(i.vol20, { digits: 1 }));
  setText("an-ret20", fmtPct(i.ret20, { sign: true }), signClass(i.ret20));
}

function showDecision(a) {
  const d = a.decision || {};
  $("an-action").replaceChildren(actionBadge(d.action));
  setText("an-target", fmtTarget(d));
  setText("an-confidence", fmtPct(d.confidence, { digits: 0 }));
  setText("an-asof", fmtTime(a.as_of));
  setText("an-computed", fmtTime(a.computed_at));
  setText("an-rationale", d.rationale || "");
}

/** "garch 83%, auto_ets 9%": the ensemble's models by weight (or just names). */
function modelsText(models) {
  if (!models.length) return "";
  const named = models.map((m) => (typeof m === "string" ? { name: m } : m));
  named.sort((a, b) => (b.weight ?? 0) - (a.weight ?? 0));
  return `Models by weight: ${named.map((m) => (isNum(m.weight) ? `${m.name} ${fmtPct(m.weight, { digits: 0 })}` : m.name)).join(", ")}`;
}

function showForecast(a) {
  const f = a.forecast || {};
  const path = f.path || [];
  setText("an-horizon", f.horizon ? `${f.horizon} bars ahead` : "");
  setText("an-models", modelsText(f.models || []));
  fillTable("forecast-table", path, (p) => el("tr", {},
    num(p.step), td(fmtTime(p.time)), num(fmtMoney(p.lower95)), num(fmtMoney(p.lower80)),
    num(fmtMoney(p.mean)), num(fmtMoney(p.upper80)), num(fmtMoney(p.upper95))), "No forecast");
  chart.setForecast(path);
}

async function show(symbol) {
  const mine = ++generation;
  history.replaceState(null, "", `?symbol=${encodeURIComponent(symbol)}`);
  setText("chart-title", symbol);
  setText("analysis-status", "loading…");
  const bars = await getJson(`/market/${encodeURIComponent(symbol)}/bars`, { limit: 300 });
  if (mine !== generation) return;
  chart.setBars(bars.bars || []);
  chart.setForecast([]);
  const found = await analysisOf(symbol, mine);
  if (!found) return;
  showIndicators(found);
  showDecision(found);
  showForecast(found);
  setText("analysis-status", found.as_of ? `as of ${fmtTime(found.as_of)} UTC` : "");
}

startPage(async () => {
  chart = candleChart($("analysis-chart"));
  const symbols = (await marketSymbols()).map((s) => s.symbol);
  const wanted = new URLSearchParams(location.search).get("symbol");
  const first = symbols.includes(wanted) ? wanted : symbols.includes("SP500") ? "SP500" : symbols[0];
  const select = $("symbol");
  fillSelect(select, symbols.map((value) => ({ value })), first);
  select.addEventListener("change", () => show(select.value).catch(showError));
  if (first) await show(first);
  else setText("analysis-status", "No market data: import bars first.");
});
