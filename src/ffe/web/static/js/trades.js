// A trade as a table row's cells, the same on the overview and on a backtest's page: both
// read round trips from flat to flat (ffe.portfolio.trades), whose P&L is net of every
// commission and, while open, unrealised at the mark for the part still held.
import { el, fmtPct, fmtQty, fmtSigned, fmtTime, num, signClass, td } from "./app.js";

export function fmtDuration(seconds) {
  if (typeof seconds !== "number") return "—";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

const price2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
/** A price: cents from 1 up, significant digits below (a coin at 0.000123). */
export const fmtPrice = (x) => (typeof x !== "number" ? "—" : Math.abs(x) >= 1 ? price2.format(x) : x.toPrecision(4));

/** The cells of round trip `t`, in the columns of the templates' trades_table; `markSource`
 *  says where an open one's mark comes from ("the last bar", "the account's last price"). */
export function tradeCells(t, markSource) {
  const open = t.status === "open";
  const when = t.mark_time ? ` on ${fmtTime(t.mark_time)}` : "";
  const marked = open && typeof t.mark_price === "number" ? `valued at ${fmtPrice(t.mark_price)}${when} (${markSource})` : "";
  const title = open ? `Still open: P&L unrealised, ${marked || "no price known"}` : "";
  const split = open ? `realised ${fmtSigned(t.realized_pnl)}, unrealised ${fmtSigned(t.unrealized_pnl)}${marked ? `, ${marked}` : ""}` : "";
  return [
    td(t.symbol), td(t.direction),
    el("td", {}, el("span", { class: "state", "data-status": t.status, title }, t.status)),
    td(fmtTime(t.entry_time)), num(fmtPrice(t.entry_price)),
    td(open ? "open" : fmtTime(t.exit_time)), num(fmtPrice(t.exit_price)),
    num(fmtQty(t.quantity)),
    el("td", { class: `num ${signClass(t.pnl)}`, title: split }, fmtSigned(t.pnl) + (open && t.pnl !== null ? " *" : "")),
    num(fmtPct(t.pnl_pct, { sign: true }), signClass(t.pnl_pct)),
    num(fmtDuration(t.duration_s)),
  ];
}
