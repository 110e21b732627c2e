// Calendar heatmaps of a run's returns (GET /runs/{id}/returns): years by months, and one
// year's days month by month. Plain tables: every cell says its return in text, and its
// colour (green up, red down, stronger for larger moves) only repeats it.
import { el, fmtPct, isNum } from "./app.js";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/** The background of a return, as strong as `value` is large next to `scale`; at most half
 *  opaque, so the cell's text keeps a contrast of 4.5:1 on the panel (WCAG AA). */
function shade(value, scale) {
  const strength = 0.1 + 0.4 * Math.min(1, Math.abs(value) / (scale || 1));
  return value >= 0 ? `rgba(38, 176, 137, ${strength.toFixed(2)})` : `rgba(239, 91, 91, ${strength.toFixed(2)})`;
}

/** A typical size of the values (their 90th percentile of size), so one outlier does not
 *  wash out every other cell. */
function scaleOf(values) {
  const sizes = values.filter(isNum).map(Math.abs).sort((a, b) => a - b);
  return sizes.length ? sizes[Math.floor((sizes.length - 1) * 0.9)] || sizes[sizes.length - 1] : 1;
}

function cell(value, label, scale, extra = {}) {
  if (!isNum(value)) return el("td", { class: "none", title: `${label}: no data` }, "—");
  const text = fmtPct(value, { sign: true, digits: Math.abs(value) < 0.1 ? 2 : 1 });
  const td = el("td", { title: `${label}: ${text}`, ...extra }, text);
  if (value !== 0) td.style.background = shade(value, scale);
  else td.classList.add("flat"); // no change: neither green nor red
  return td;
}

/** Years (rows) by months, with each year's return in the last column. */
export function monthlyTable(returns) {
  const monthly = new Map((returns.monthly || []).map((p) => [p.period, p.value]));
  const yearly = returns.yearly || [];
  const scale = scaleOf([...monthly.values()]);
  const yearScale = scaleOf(yearly.map((p) => p.value));
  const head = el("tr", {}, el("th", { scope: "col" }, "Year"), MONTHS.map((m) => el("th", { scope: "col" }, m)), el("th", { scope: "col" }, "Year"));
  const rows = yearly.map((y) => el("tr", {},
    el("th", { scope: "row" }, y.period),
    MONTHS.map((name, i) => {
      const key = `${y.period}-${String(i + 1).padStart(2, "0")}`;
      return monthly.has(key) ? cell(monthly.get(key), `${name} ${y.period}`, scale) : el("td", { class: "none" }, "");
    }),
    cell(y.value, y.period, yearScale, { class: "total" })));
  return el("table", { class: "calendar", "data-testid": "monthly-table" },
    el("caption", { class: "sr-only" }, "Monthly returns by year, and each year's return"),
    el("thead", {}, head), el("tbody", {}, rows));
}

/** The years `returns` has days in, newest first. */
export const yearsOf = (returns) => [...new Set((returns.daily || []).map((p) => p.period.slice(0, 4)))].sort().reverse();

/** One small calendar per month of `year` with days: weeks as rows, Monday first. */
export function dailyCalendars(returns, year) {
  const days = (returns.daily || []).filter((p) => p.period.startsWith(`${year}-`));
  const scale = scaleOf(days.map((p) => p.value));
  const byMonth = new Map();
  for (const day of days) {
    const month = Number(day.period.slice(5, 7));
    if (!byMonth.has(month)) byMonth.set(month, new Map());
    byMonth.get(month).set(Number(day.period.slice(8, 10)), day.value);
  }
  return [...byMonth.entries()].map(([month, values]) => monthTable(Number(year), month, values, scale));
}

function monthTable(year, month, values, scale) {
  const first = new Date(Date.UTC(year, month - 1, 1));
  const length = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const lead = (first.getUTCDay() + 6) % 7; // Monday is 0
  const cells = Array.from({ length: lead }, () => el("td", {}, ""));
  for (let day = 1; day <= length; day += 1) {
    const label = `${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
    if (values.has(day)) {
      const td = cell(values.get(day), label, scale);
      td.prepend(el("span", { class: "day" }, day));
      cells.push(td);
    } else {
      cells.push(el("td", { class: "none", title: `${label}: no bar` }, el("span", { class: "day" }, day)));
    }
  }
  const rows = [];
  for (let i = 0; i < cells.length; i += 7) rows.push(el("tr", {}, cells.slice(i, i + 7)));
  return el("table", { class: "calendar", "data-testid": `daily-${year}-${month}` },
    el("caption", {}, `${MONTHS[month - 1]} ${year}`),
    el("thead", {}, el("tr", {}, WEEKDAYS.map((d) => el("th", { scope: "col", abbr: d }, d[0])))),
    el("tbody", {}, rows));
}
