// Overview: the account's equity and drawdown, positions and fills, kept live by the stream.
// The cards come from one /portfolio answer at a time (one state of the account), never
// partly from a stream event: cash and positions then always add up to the equity shown.
import {
  $, api, busy, canTrade, confirmAction, every, fillSelect, fillTable, fmtMoney, fmtPct, fmtQty,
  fmtSigned, fmtTime, getJson, isNum, num, onResync, onStream, prependRow, serviceStatus, setText,
  signClass, startPage, td, el, toast,
} from "../app.js";
import { addBenchmark, equityChart } from "../charts.js";
import { tradeCells } from "../trades.js";

const query = new URLSearchParams(location.search);
let account = query.get("account") || null;
let lastPortfolio = null;
let worstDrawdown = null; // from the equity curve, when the portfolio does not say
let reloadPortfolio = async () => {}; // the cards and positions read again (set by startPage)

function renderPortfolio(p) {
  lastPortfolio = p;
  account ??= p.account;
  setText("stat-equity", fmtMoney(p.equity));
  setText("stat-cash", fmtMoney(p.cash));
  setText("stat-positions-value", fmtMoney(p.positions_value));
  setText("stat-pnl", fmtSigned(p.pnl), signClass(p.pnl));
  // return_pct is in percent (12.3 means 12.3%).
  setText("stat-return", isNum(p.return_pct) ? fmtPct(p.return_pct / 100, { sign: true }) : "—", signClass(p.return_pct));
  const dd = $("stat-drawdown");
  const worst = isNum(p.max_drawdown) ? p.max_drawdown : worstDrawdown;
  dd.replaceChildren(fmtPct(p.drawdown), isNum(worst) ? el("small", {}, `max ${fmtPct(worst, { digits: 1 })}`) : "");
  setText("as-of", p.as_of ? `as of ${fmtTime(p.as_of)} UTC` : "");
  fillTable("positions-table", (p.positions || []).filter((x) => x.quantity), positionRow, "No open positions");
}

function positionRow(x) {
  const row = el("tr", {},
    td(x.symbol),
    num(fmtQty(x.quantity), x.quantity < 0 ? "down" : ""),
    num(fmtMoney(x.average_price)),
    num(fmtMoney(x.mark_price)),
    num(fmtMoney(x.market_value)),
    num(fmtSigned(x.unrealized_pnl), signClass(x.unrealized_pnl)));
  if (canTrade) {
    const button = el("button", { type: "button", class: "btn small danger", "data-testid": `close-${x.symbol}` }, "Close");
    button.addEventListener("click", () => closePosition(button, x));
    row.append(el("td", { class: "num" }, button));
  }
  return row;
}

/** Ask, naming the symbol and quantity, then have the agent close the position: its order
 *  passes the risk engine and the approval policy like any other. */
async function closePosition(button, position) {
  const side = position.quantity > 0 ? "sell" : "buy";
  const confirmed = await confirmAction({
    title: `Close ${position.symbol}?`,
    message: `The agent will ${side} ${fmtQty(Math.abs(position.quantity))} ${position.symbol} at market ` +
      `(position ${fmtQty(position.quantity)}), after its risk checks; if the approval policy ` +
      "asks for it, the order waits on the Agent page.",
    confirmLabel: `Close ${fmtQty(position.quantity)} ${position.symbol}`,
    keepLabel: "Keep it",
  });
  if (!confirmed) return;
  await busy(button, async () => {
    const body = { quantity: position.quantity, ...(account ? { account } : {}) };
    const { data } = await api(`/positions/${encodeURIComponent(position.symbol)}/close`, { method: "POST", body });
    toast(data.detail, data.status === "sent" ? "ok" : "info", 9000);
  });
  // Whatever the answer (a refusal says the position changed: "look again"), show the
  // position as it is now rather than at the page's last read.
  await reloadPortfolio().catch(() => {});
}

function tradeRow(t) {
  return el("tr", { class: t.status === "open" ? "open" : false, "data-testid": "trade-row", "data-status": t.status },
    ...tradeCells(t, "the account's last price"));
}

function renderTrades(found) {
  fillTable("trades-table", (found.items || []).slice(0, 50), tradeRow, "No trades yet");
  const closed = found.closed ?? 0;
  const wins = closed ? ` (${fmtPct((found.wins ?? 0) / closed, { digits: 0 })} won)` : "";
  setText("trades-summary", `${closed} closed${wins}, realised ${fmtSigned(found.realized_pnl)}` +
    ` · ${found.open ?? 0} open, unrealised ${fmtSigned(found.unrealized_pnl)}`);
}

function fillRow(f) {
  const side = f.quantity > 0 ? "buy" : "sell";
  return el("tr", {},
    td(fmtTime(f.time)),
    td(f.symbol),
    el("td", {}, el("span", { class: `action ${side}` }, side)),
    num(fmtQty(Math.abs(f.quantity))),
    num(fmtMoney(f.price)),
    num(isNum(f.commission) ? fmtMoney(f.commission) : "—"));
}

function showAgent(a) {
  const pill = $("agent-pill");
  pill.dataset.status = a ? a.status : "stopped";
  pill.textContent = a ? `agent ${a.status}` : "no agent";
}

function setupAccounts(agents) {
  const accounts = [...new Set((agents || []).map((a) => a.account))];
  if (accounts.length < 2) return;
  const select = $("account");
  fillSelect(select, accounts.map((value) => ({ value })), account ?? accounts[0]);
  $("account-picker").hidden = false;
  select.addEventListener("change", () => {
    location.search = `?account=${encodeURIComponent(select.value)}`;
  });
}

/** Refresh the portfolio at most once per `ms`, however many events ask for it. */
function throttled(fn, ms) {
  let waiting = false;
  return () => {
    if (waiting) return;
    waiting = true;
    setTimeout(() => { waiting = false; fn().catch(() => {}); }, ms);
  };
}

startPage(async () => {
  const chart = equityChart($("equity-chart"));
  const empty = $("equity-chart").querySelector(".chart-empty");
  const scope = () => (account ? { account } : {});
  const loadPortfolio = async () => renderPortfolio(await getJson("/portfolio", scope()));
  reloadPortfolio = loadPortfolio;
  const showCurve = (points, about) => {
    empty.hidden = chart.setData(points) > 0;
    addBenchmark(chart, points, about);
    worstDrawdown = points.reduce((worst, p) => (isNum(p.drawdown) ? Math.min(worst, p.drawdown) : worst), 0);
    if (!isNum(lastPortfolio?.max_drawdown)) renderPortfolio(lastPortfolio);
  };

  await loadPortfolio();
  const [equity, fills, status] = await Promise.all([
    getJson("/equity", { ...scope(), limit: 5000 }),
    getJson("/fills", { ...scope(), limit: 15 }),
    serviceStatus(),
  ]);
  showCurve(equity.points || [], equity.benchmark);
  fillTable("fills-table", fills.items || [], fillRow, "No fills yet");
  const loadTrades = async () => renderTrades(await getJson("/trades", scope()));
  await loadTrades();
  const refreshTrades = throttled(loadTrades, 5000);
  setupAccounts(status.agents);
  showAgent((status.agents || []).find((a) => a.account === account));

  const mine = (data) => !data.account || !account || data.account === account;
  const refresh = throttled(loadPortfolio, 1500);
  // Buy and hold comes with the whole curve only: read it again now and then while bars come.
  const reloadCurve = throttled(async () => {
    const curve = await getJson("/equity", { ...scope(), limit: 5000 });
    showCurve(curve.points || [], curve.benchmark);
  }, 10000);
  onStream("equity", (data) => {
    if (!mine(data)) return;
    if (chart.append(data)) empty.hidden = true;
    refresh(); // the cards: from the next whole answer, not from this event's two numbers
    reloadCurve();
  });
  onStream("fill", (data) => {
    if (!mine(data)) return;
    prependRow("fills-table", fillRow(data), 15);
    refresh();
    refreshTrades();
  });
  onStream("agent", (data) => { if (mine(data)) showAgent(data); });
  // The stream is the fast path; a slow poll covers a dropped connection and fills that were
  // made before this page connected but journaled after it first read them.
  const loadFills = async () =>
    fillTable("fills-table", (await getJson("/fills", { ...scope(), limit: 15 })).items || [],
      fillRow, "No fills yet");
  every(20000, async () => { await loadPortfolio(); await loadFills(); await loadTrades(); }, false);
  // A new connection, or a missed event: read again all that the page shows.
  onResync(async () => {
    const [, curve] = await Promise.all([loadPortfolio(), getJson("/equity", { ...scope(), limit: 5000 }), loadFills(), loadTrades()]);
    showCurve(curve.points || [], curve.benchmark);
  });
  setTimeout(loadFills, 3000);
});
