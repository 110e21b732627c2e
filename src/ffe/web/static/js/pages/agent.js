// Agent: state and controls, starting a paper agent, the approval queue and live decisions.
import {
  $, actionBadge, busy, canTrade, confirmAction, el, every, fillSelect, fillTable, fmtAgo, fmtMoney,
  fmtPct, fmtQty, fmtTarget, fmtTime, getJson, marketSymbols, num, onResync, onStream, paramInputs,
  postJson, readParams, showError, stateBadge, strategies, startPage, td, toast,
} from "../app.js";
import { latestBar, mergeDecisions } from "../sequence.js";

let account = new URLSearchParams(location.search).get("account") || null;
let current = null; // the selected account's AgentStatus
// The newest bar the stream has shown for the selected account's run: the journal (and so
// GET /agent) is written every few seconds, months of bars behind a fast replay.
let liveBar = null;

// Which commands make sense in which state; emergency stop always does.
const ENABLED = {
  pause: (s) => s === "running",
  resume: (s) => s === "paused",
  stop: (s) => s !== "stopped" && s !== "finished",
  reset: (s) => s === "halted",
  "emergency-stop": () => true,
};

const CONFIRM = {
  stop: {
    title: "Stop the agent?",
    message: "It finishes the bar in hand and stops. Open positions stay as they are.",
    confirmLabel: "Stop agent",
  },
  "emergency-stop": {
    title: "Emergency stop?",
    message: "Cancels every open order, closes every position at market and halts the agent. It stays halted until someone resets it.",
    confirmLabel: "Emergency stop",
  },
};

function showState(agents, supervised) {
  account ??= supervised?.account || agents[0]?.account || null;
  current = agents.find((a) => a.account === account) || null;
  if (decisionsRun !== undefined && (current?.run_id ?? null) !== decisionsRun) loadDecisions().catch(showError);
  const status = current ? current.status : "stopped";
  stateBadge($("agent-state"), status);
  $("fact-account").textContent = account || "—";
  $("fact-run").textContent = current?.run_id || "—";
  $("fact-owner").textContent = current?.owner || "—";
  $("fact-lease").textContent = current?.lease_expires_at ? fmtAgo(current.lease_expires_at) : "—";
  if (liveBar && liveBar.run !== (current?.run_id ?? null)) liveBar = null;
  showBar();
  const here = supervised && supervised.account === account && supervised.strategy;
  $("fact-strategy").textContent = here ? supervised.strategy : "—";
  $("fact-symbols").textContent = here ? (supervised.symbols || []).join(", ") : "—";
  $("agent-chosen").hidden = !(here && supervised.chosen);
  $("agent-chosen").textContent = here && supervised.chosen ? `How it was chosen: ${supervised.chosen}.` : "";
  $("agent-halted").hidden = !current?.halted_reason;
  $("agent-halted").textContent = current?.halted_reason ? `Halted: ${current.halted_reason}` : "";
  $("agent-error").hidden = !supervised?.error;
  $("agent-error").textContent = supervised?.error ? `The agent in this server stopped with an error: ${supervised.error}` : "";
  for (const button of document.querySelectorAll("[data-command]")) {
    button.disabled = !ENABLED[button.dataset.command](status);
  }
  showAgents(agents);
  showSummary(supervised && supervised.account === account ? supervised.summary : null);
}

/** A finished replay against buy and hold, and the commands worth running next. */
function showSummary(summary) {
  $("agent-summary").hidden = !summary;
  if (!summary) return;
  $("summary-verdict").textContent = `${summary.strategy} on ${summary.symbols.join(", ")} `
    + (summary.beat_benchmark ? "beat buy and hold" : "did not beat buy and hold");
  $("summary-return").textContent = fmtPct(summary.total_return, { sign: true, digits: 1 });
  $("summary-benchmark").textContent = fmtPct(summary.benchmark_return, { sign: true, digits: 1 });
  $("summary-drawdown").textContent = fmtPct(summary.max_drawdown, { digits: 1 });
  $("summary-trades").textContent = String(summary.trades);
  $("summary-win-rate").textContent = summary.win_rate === null ? "no closed trade" : fmtPct(summary.win_rate, { digits: 0 });
  $("summary-costs").textContent = `Buy and hold: the same cash and symbols, ${summary.costs}.`;
  $("summary-next").replaceChildren(...summary.next_steps.map((command) => el("li", {}, commandText(command))));
}

/** A command whose words wrap as wholes: a narrow screen never splits "--param" at a hyphen. */
function commandText(command) {
  const words = command.split(" ").map((word) => el("span", { class: "word" }, word));
  return el("code", {}, ...words.flatMap((word, i) => (i ? [" ", word] : [word])));
}

/** The bar facts: the journal's, or the stream's when newer. */
function showBar() {
  const shown = latestBar({ time: current?.last_bar_time, bar: current?.bar }, liveBar);
  $("fact-bar-time").textContent = fmtTime(shown.time);
  $("fact-bar").textContent = shown.bar ?? "—";
}

function onLiveBar(data) {
  if (!current || current.status === "stopped" || current.status === "finished") return;
  liveBar = latestBar(liveBar, { run: current.run_id, time: data.time, bar: data.bar });
  liveBar.run = current.run_id;
  showBar();
}

function showAgents(agents) {
  $("agents-wrap").hidden = agents.length < 2;
  if (agents.length < 2) return;
  fillTable("agents-table", agents, (a) => el("tr", {
    class: a.account === account ? "clickable selected" : "clickable",
    onclick: () => { location.search = `?account=${encodeURIComponent(a.account)}`; },
  }, td(a.account), el("td", {}, el("span", { class: "state", "data-status": a.status }, a.status)),
  td(a.run_id || "—"), td(fmtTime(a.last_bar_time)), num(a.bar ?? "—")));
  const select = $("account");
  fillSelect(select, agents.map((a) => ({ value: a.account })), account);
  $("account-picker").hidden = false;
  select.onchange = () => { location.search = `?account=${encodeURIComponent(select.value)}`; };
}

async function loadAgent() {
  const found = await getJson("/agent");
  showState(found.agents || [], found.supervised || null);
}

/** Look again soon after a command: the agent acts on it at its next bar. */
let following = false;
function followUp() {
  if (following) return;
  following = true;
  for (const ms of [300, 1000, 2500, 5000]) setTimeout(() => loadAgent().catch(() => {}), ms);
  setTimeout(() => { following = false; }, 5000);
}

async function sendCommand(button) {
  const command = button.dataset.command;
  if (CONFIRM[command] && !(await confirmAction(CONFIRM[command]))) return;
  await busy(button, async () => {
    const done = await postJson(`/agent/${command}`, account ? { account } : {});
    const name = done.command.replace("_", " ");
    // With no agent running, a halt or reset is applied at once: the answer says so.
    toast(done.detail || `${name[0].toUpperCase()}${name.slice(1)} sent to ${done.account}`, "ok");
    followUp();
  });
}

// -- approvals ---------------------------------------------------------------------------------

function approvalRow(a) {
  const side = a.quantity > 0 ? "buy" : "sell";
  const cells = [
    td(fmtTime(a.time)), td(a.symbol), el("td", {}, el("span", { class: `action ${side}` }, side)),
    num(fmtQty(Math.abs(a.quantity))), num(fmtMoney(a.reference_price)),
    el("td", { class: "text" }, a.rationale || "—"), td(fmtAgo(a.expires_at)),
  ];
  const actions = el("td", { class: "actions" });
  if (canTrade) {
    actions.append(
      el("button", { class: "btn small good", type: "button", "data-testid": `approve-${a.id}`, onclick: (e) => decide(e.currentTarget, a, "approve") }, "Approve"),
      el("button", { class: "btn small danger", type: "button", "data-testid": `reject-${a.id}`, onclick: (e) => decide(e.currentTarget, a, "reject") }, "Reject"));
  }
  return el("tr", { "data-approval": a.id }, ...cells, actions);
}

async function decide(button, approval, verdict) {
  await busy(button, async () => {
    const done = await postJson(`/approvals/${approval.id}/${verdict}`);
    toast(`${verdict === "approve" ? "Approved" : "Rejected"}: ${approval.symbol} ${fmtQty(approval.quantity)} (${done.status})`, "ok");
    await loadApprovals();
  });
}

async function loadApprovals() {
  const found = await getJson("/approvals", { status: "pending", limit: 100 });
  const items = found.items || [];
  fillTable("approvals-table", items, approvalRow, "No orders waiting for approval");
  const count = $("approvals-count");
  count.textContent = found.total ?? items.length;
  count.classList.toggle("hot", items.length > 0);
}

// -- decisions ---------------------------------------------------------------------------------

const KEEP = 50; // decisions the table keeps
let decisionsRun; // the run whose decisions the table shows
let shownDecisions = []; // newest first: the journal's, then what the stream added

/** The latest decisions of the agent's current run (reloaded when a new run starts, and
 *  with `again` when the stream missed some); the stream's newer ones stay on top, since
 *  the agent journals them every few seconds. */
async function loadDecisions(again = false) {
  const runId = current?.run_id ?? null;
  if (runId === decisionsRun && !again) return;
  if (runId !== decisionsRun) shownDecisions = [];
  decisionsRun = runId;
  const query = runId ? { run_id: runId } : account ? { account } : {};
  const found = await getJson("/decisions", { ...query, limit: 20 });
  shownDecisions = mergeDecisions(found.items || [], shownDecisions, KEEP);
  fillTable("agent-decisions", shownDecisions, decisionRow, "No decisions yet");
}

function addDecision(d) {
  shownDecisions = mergeDecisions([], [d, ...shownDecisions], KEEP);
  fillTable("agent-decisions", shownDecisions, decisionRow, "No decisions yet");
  $("agent-decisions").tBodies[0].rows[0]?.classList.add("fresh");
}

function decisionRow(d) {
  return el("tr", { "data-testid": "agent-decision" },
    td(fmtTime(d.time)), td(d.symbol), el("td", {}, actionBadge(d.action)),
    num(fmtTarget(d)), num(fmtPct(d.confidence, { digits: 0 })),
    el("td", { class: "text" }, d.rationale || "—"));
}

// -- starting ----------------------------------------------------------------------------------

async function setupStart() {
  const form = $("start-form");
  const [all, symbols] = await Promise.all([strategies(), marketSymbols()]);
  fillSelect(form.strategy, all.map((s) => ({ value: s.name })), "sma_cross");
  const names = symbols.map((s) => s.symbol);
  fillSelect(form.symbols, names.map((value) => ({ value })), names.includes("SP500") ? "SP500" : names[0]);
  const showParams = () => paramInputs($("start-params"), all.find((s) => s.name === form.strategy.value)?.params);
  showParams();
  form.strategy.addEventListener("change", showParams);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      strategy: form.strategy.value,
      symbols: [...form.symbols.selectedOptions].map((o) => o.value),
      params: readParams(form),
      speed: form.speed.value === "" ? null : Number(form.speed.value),
    };
    if (form.approval.value) body.approval = form.approval.value;
    if (form.fresh.checked) body.fresh = true;
    await busy(event.submitter || form.querySelector("[type=submit]"), async () => {
      const started = await postJson("/agent/start", body);
      account = started.supervised?.account || account;
      toast(`Agent starting: ${body.strategy} on ${body.symbols.join(", ")}`, "ok");
      followUp();
    });
  });
}

startPage(async () => {
  await loadAgent();
  for (const button of document.querySelectorAll("[data-command]")) {
    button.addEventListener("click", () => sendCommand(button));
  }
  await Promise.all([loadDecisions(), loadApprovals(), canTrade ? setupStart() : null]);

  const mine = (data) => !data.account || !account || data.account === account;
  onStream("agent", () => loadAgent().catch(showError));
  onStream("event", (data) => {
    // A live feed's outage, stale data, gap filled: said where the operator looks.
    if (data.kind === "feed" && mine(data)) toast(data.text, data.event === "feed_down" || data.event === "stale" ? "error" : "ok", 15000);
    followUp();
  });
  onStream("approval", () => loadApprovals().catch(showError));
  onStream("decision", (data) => {
    if (!mine(data)) return;
    addDecision(data);
    onLiveBar(data);
  });
  onStream("equity", (data) => { if (mine(data)) onLiveBar(data); });
  // A new connection, or a missed event: read again all that the page shows.
  onResync(async () => { await loadAgent(); await Promise.all([loadDecisions(true), loadApprovals()]); });
  every(5000, loadAgent, false);
  every(15000, loadApprovals, false);
});
