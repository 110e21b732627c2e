// Decisions: a filtered, paged list with rationale and outcome, and the calibration diagram.
import {
  $, actionBadge, ApiError, el, fillTable, fmtNum, fmtPct, fmtTarget, fmtTime, getJson, isNum, num, setText,
  showError, startPage, td,
} from "../app.js";

const PAGE = 50;
const FILTERS = ["symbol", "run_id", "account"];
let offset = 0;

function filters() {
  const form = $("filters");
  const found = {};
  for (const name of FILTERS) if (form[name].value.trim()) found[name] = form[name].value.trim();
  return found;
}

function confidenceCell(c) {
  if (!isNum(c)) return num("—");
  return num(el("span", {}, el("span", { class: "bar" }, el("i", { style: `width:${Math.round(c * 100)}%` })), fmtPct(c, { digits: 0 })));
}

// What a decision's outcome cell says while there is no return to show, by its state.
const WAITING = { pending: "pending", unresolved: "unresolved", unscored: "not scored" };

function outcomeCell(d) {
  const o = d.outcome;
  const state = d.outcome_status || { state: o ? "resolved" : "pending", text: "" };
  if (!o || state.state !== "resolved") {
    const left = state.state === "pending" && isNum(state.bars_left) ? ` · ${state.bars_left} bar${state.bars_left === 1 ? "" : "s"}` : "";
    return el("td", { class: "num muted", title: state.text, "data-outcome": state.state }, `${WAITING[state.state] ?? state.state}${left}`);
  }
  const mark = o.hit === true ? "✓ " : o.hit === false ? "✗ " : "";
  const cls = o.hit === true ? "up" : o.hit === false ? "down" : "";
  return el("td", { class: `num ${cls}`, title: state.text || `over ${o.horizon ?? "?"} bars`, "data-outcome": "resolved" },
    mark + fmtPct(o.realized_return, { sign: true }));
}

function detailRow(d) {
  const votes = d.votes && Object.keys(d.votes).length ? `\n\nModel votes: ${JSON.stringify(d.votes, null, 1).replace(/\s+/g, " ")}` : "";
  const said = d.outcome_status?.text;
  const outcome = said ? `\nOutcome: ${said}` : d.outcome ? `\nOutcome over ${d.outcome.horizon} bars: ${fmtPct(d.outcome.realized_return, { sign: true })}` : "";
  return el("tr", { class: "detail" }, el("td", { colspan: 7 },
    `${d.rationale || "No rationale recorded."}${votes}\n\nRun ${d.run_id || "—"} · decision ${d.id}${outcome}`));
}

/** When no decision on the page is scored, say why once, above the table. */
function showOutcomeNote(items) {
  const note = $("outcome-note");
  const unscored = items.length > 0 && items.every((d) => d.outcome_status?.state === "unscored");
  note.hidden = !unscored;
  note.textContent = unscored ? `Outcomes are ${items[0].outcome_status.text}.` : "";
}

function decisionRow(d) {
  const row = el("tr", { class: "clickable", title: "Show the full rationale" },
    td(fmtTime(d.time)), td(d.symbol), el("td", {}, actionBadge(d.action)),
    num(fmtTarget(d)), confidenceCell(d.confidence), outcomeCell(d),
    el("td", { class: "text" }, el("span", { class: "clamp" }, d.rationale || "None recorded: this strategy gives targets without reasons")));
  row.addEventListener("click", () => {
    const next = row.nextElementSibling;
    if (next?.classList.contains("detail")) next.remove();
    else row.after(detailRow(d));
  });
  return row;
}

async function loadDecisions() {
  const page = await getJson("/decisions", { ...filters(), limit: PAGE, offset });
  const items = page.items || [];
  fillTable("decisions-table", items, decisionRow, "No decisions match");
  showOutcomeNote(items);
  const total = page.total ?? items.length;
  setText("page-info", items.length ? `${offset + 1}–${offset + items.length} of ${total}` : "");
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + items.length >= total;
}

// -- calibration -------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg"; // a namespace name, never fetched
const svg = (tag, attrs = {}, text) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
};

function drawCalibration(box, bins, note = "No decisions with an outcome yet") {
  const W = 360, H = 290, L = 40, R = 18, T = 10, B = 34; // R: room for the "100%" tick's second half
  const x = (v) => L + v * (W - L - R);
  const y = (v) => H - B - v * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMidYMid meet" });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("line", { class: "grid", x1: x(0), x2: x(1), y1: y(t), y2: y(t) }));
    root.append(svg("text", { x: L - 6, y: y(t) + 3, "text-anchor": "end" }, `${t * 100}%`));
    root.append(svg("text", { x: x(t), y: H - B + 14, "text-anchor": "middle" }, `${t * 100}%`));
  }
  root.append(svg("text", { x: (L + W) / 2, y: H - 4, "text-anchor": "middle" }, "confidence"));
  root.append(svg("text", { x: 10, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 10 ${(T + H - B) / 2})` }, "hit rate"));
  root.append(svg("line", { class: "axis", x1: x(0), x2: x(1), y1: y(0), y2: y(0) }));
  root.append(svg("line", { class: "axis", x1: x(0), x2: x(0), y1: y(0), y2: y(1) }));
  root.append(svg("line", { class: "diag", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }));
  const used = bins.filter((b) => b.count > 0 && isNum(b.hit_rate) && isNum(b.mean_confidence));
  const most = Math.max(1, ...used.map((b) => b.count));
  for (const b of used) {
    const h = 0.3 * (b.count / most);
    root.append(svg("rect", { class: "count", x: x(b.lo) + 1, width: Math.max(1, x(b.hi) - x(b.lo) - 2), y: y(h), height: y(0) - y(h) }));
  }
  if (used.length) {
    const points = used.map((b) => `${x(b.mean_confidence)},${y(b.hit_rate)}`).join(" ");
    root.append(svg("polyline", { class: "curve", points }));
  }
  for (const b of used) {
    const dot = svg("circle", { class: "dot", cx: x(b.mean_confidence), cy: y(b.hit_rate), r: 3 + 4 * Math.sqrt(b.count / most) });
    dot.append(svg("title", {}, `${fmtPct(b.lo, { digits: 0 })}–${fmtPct(b.hi, { digits: 0 })}: ${b.count} decisions, confidence ${fmtPct(b.mean_confidence, { digits: 1 })}, hit rate ${fmtPct(b.hit_rate, { digits: 1 })}`));
    root.append(dot);
  }
  box.replaceChildren(root, used.length ? "" : el("p", { class: "chart-empty" }, el("span", {}, note)));
}

async function loadCalibration() {
  const { run_id: runId, account } = filters();
  let found;
  try {
    found = await getJson("/decisions/calibration", { run_id: runId, account });
  } catch (error) {
    // Nothing to score yet (no run, or no outcomes) is a state, not a failure.
    if (!(error instanceof ApiError) || error.status >= 500 || error.status === 401) throw error;
    found = { bins: [], note: error.message };
  }
  drawCalibration($("calibration-chart"), found.bins || [], found.note);
  setText("cal-n", found.n ?? "—");
  setText("cal-ece", fmtPct(found.ece, { digits: 1 }));
  setText("cal-brier", fmtNum(found.brier, 3));
  const skill = found.skill;
  setText("cal-auc", skill && skill.auc != null ? fmtNum(skill.auc, 3) : "—");
  setText("cal-bss", skill && skill.brier_skill != null ? fmtNum(skill.brier_skill, 3) : "—");
  // In words: whether the confidence tells which decisions come true (it may be calibrated
  // and still not), and so whether it should gate or size anything.
  setText("cal-verdict", skill ? `${skill.verdict[0].toUpperCase()}${skill.verdict.slice(1)}.` : "");
  setText("calibration-run", found.run_id ? `run ${found.run_id}` : "");
}

startPage(async () => {
  const form = $("filters");
  const query = new URLSearchParams(location.search);
  for (const name of FILTERS) form[name].value = query.get(name) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    history.replaceState(null, "", `?${new URLSearchParams(filters())}`);
    Promise.all([loadDecisions(), loadCalibration()]).catch(showError);
  });
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadDecisions().catch(showError); });
  $("next").addEventListener("click", () => { offset += PAGE; loadDecisions().catch(showError); });
  await Promise.all([loadDecisions(), loadCalibration()]);
});
