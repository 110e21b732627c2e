// The dashboard's shared core: API calls, toasts, confirmation, the live stream, formatting
// and small DOM helpers. Pages import what they need; nothing here touches the network until
// a page asks. Data is always put in the page as text (never as HTML): rationales and symbols
// come from outside.
import { coalesced, sequenced } from "./sequence.js";

export const API = "/api/v1";
export const canTrade = document.body.dataset.canTrade === "true";

// -- API ---------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function loginUrl() {
  const here = location.pathname + location.search;
  return `/login?next=${encodeURIComponent(here)}`;
}

function messageOf(body, response) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: "field: problem" for each.
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return `${response.status} ${response.statusText || "error"}`;
}

/** Call the JSON API. `path` is under /api/v1 unless it starts with "/health".
 *  Options: method, body (sent as JSON), query (object), redirect401 (default true),
 *  okStatuses (statuses whose body is returned rather than thrown, e.g. [503]). */
export async function api(path, options = {}) {
  const { method = "GET", body, query, redirect401 = true, okStatuses = [] } = options;
  let url = path.startsWith("/health") ? path : API + path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, value);
  }
  if ([...params].length) url += `?${params}`;
  const headers = { "X-Requested-With": "ffe", Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The server cannot be reached: is it running?", 0, null);
  }
  if (response.status === 401 && redirect401) {
    location.assign(loginUrl());
    throw new ApiError("Your session has ended: log in again.", 401, null);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok && !okStatuses.includes(response.status)) {
    throw new ApiError(messageOf(data, response), response.status, data);
  }
  return { status: response.status, data, headers: response.headers };
}

/** The JSON body of a GET (or other call), throwing ApiError on failure. */
export async function getJson(path, query) {
  return (await api(path, { query })).data;
}

export async function postJson(path, body) {
  return (await api(path, { method: "POST", body })).data;
}

// -- feedback: toasts, confirmation, busy buttons ---------------------------------------------

export function toast(message, kind = "info", ms = 6000) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", "data-testid": "toast" }, message);
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), ms);
}

/** Show an error (an ApiError or anything thrown) as a toast; never throws. */
export function showError(error) {
  if (error instanceof ApiError && error.status === 401) return;
  console.error(error);
  toast(error && error.message ? error.message : String(error), "error", 9000);
}

/** Ask before doing something that cannot be undone; resolves true when confirmed. */
export function confirmAction({ title, message, confirmLabel = "Confirm", keepLabel = "Cancel" }) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-message").textContent = message;
  document.getElementById("confirm-yes").textContent = confirmLabel;
  dialog.querySelector('[value="cancel"]').textContent = keepLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

/** Run `work` with `button` marked busy, showing any error as a toast. */
export async function busy(button, work) {
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    button.removeAttribute("aria-busy");
  }
}

/**
 * The Cancel button of a job's page: ask first, then cancel job `id` and pass the job, as the
 * server now has it, to `cancelled`. `what` names the job ("backtest"); `alsoStops` says what
 * else a running one loses (", with its worker processes,").
 */
export async function cancelJob(button, id, { what, alsoStops = "", cancelled }) {
  const confirmed = await confirmAction({
    title: `Cancel this ${what}?`,
    message: `A waiting ${what} will not run; a running one is stopped now${alsoStops} and records no result.`,
    confirmLabel: `Cancel ${what}`,
    keepLabel: "Keep it",
  });
  if (!confirmed) return;
  await busy(button, async () => {
    const job = await postJson(`/jobs/${encodeURIComponent(id)}/cancel`);
    toast(`${what[0].toUpperCase()}${what.slice(1)} cancelled`, "ok");
    await cancelled(job);
  });
}

// -- DOM helpers -------------------------------------------------------------------------------

/** Make an element: el("td", {class: "num"}, "1.00"). Children are text or nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

export function setText(id, text, cls) {
  const node = $(id);
  if (!node) return;
  node.textContent = text;
  if (cls !== undefined) node.className = node.className.replace(/\b(up|down)\b/g, "").trim() + (cls ? ` ${cls}` : "");
}

/** Replace a table's body with one row per item (rowOf returns a <tr>), or an empty note. */
export function fillTable(tableId, items, rowOf, emptyText = "Nothing yet") {
  const table = $(tableId);
  const body = table.tBodies[0];
  const columns = table.tHead ? table.tHead.rows[0].cells.length : 1;
  body.replaceChildren(...(items.length ? items.map(rowOf) : [emptyRow(columns, emptyText)]));
}

export function emptyRow(columns, text) {
  return el("tr", { class: "empty" }, el("td", { colspan: columns }, text));
}

/** Put a row at the top of a table, keeping at most `keep` rows. */
export function prependRow(tableId, row, keep = 50) {
  const body = $(tableId).tBodies[0];
  body.querySelector("tr.empty")?.remove();
  row.classList.add("fresh");
  body.prepend(row);
  while (body.rows.length > keep) body.lastElementChild.remove();
}

export const td = (text, cls) => el("td", cls ? { class: cls } : {}, text);
export const num = (text, cls) => el("td", { class: cls ? `num ${cls}` : "num" }, text);

export function actionBadge(action) {
  return action ? el("span", { class: `action ${action}` }, action) : "—";
}

export function stateBadge(node, status) {
  node.dataset.status = status || "unknown";
  node.textContent = status || "unknown";
}

const WORKER_HINT = "Start one with `ffe worker`, or run the API with `ffe serve --jobs`.";

/** A job's status badge for a table, with "no worker is running" under it while the job is
 * queued and no worker is alive to run it. */
export function jobState(job) {
  const badge = el("span", { class: "state", "data-status": job.status }, job.status);
  if (!job.waiting) return badge;
  return el("span", {}, badge, el("div", { class: "muted small", title: WORKER_HINT }, "no worker is running"));
}

/** Show in `node` why a queued job does not run (no worker alive), or hide it. */
export function showWaiting(node, job) {
  node.hidden = !job.waiting;
  node.textContent = job.waiting ? `${job.waiting[0].toUpperCase()}${job.waiting.slice(1)}. ${WORKER_HINT}` : "";
}

// -- parameters as a readable list -------------------------------------------------------------

const LIST_SHOWN = 5;
const TEXT_SHOWN = 60;

/** A list of values as text: the first `shown`, then "and N more"; `full` is all of them
 *  (for a tooltip). */
export function listText(values, shown = LIST_SHOWN) {
  const all = (values || []).map(String);
  const full = all.join(", ");
  if (all.length <= shown) return { text: full, full };
  return { text: `${all.slice(0, shown).join(", ")} and ${all.length - shown} more`, full };
}

/** A parameter's value as short text and its full text: lists shortened, objects as
 *  "key=value" pairs, long text cut with an ellipsis. Never JSON. */
export function paramText(value) {
  if (Array.isArray(value)) return listText(value);
  if (value && typeof value === "object") {
    const pairs = Object.entries(value).map(([k, v]) => `${k}=${paramText(v).full}`);
    return listText(pairs, 3);
  }
  const full = value === null || value === undefined ? "—" : String(value);
  return { text: full.length > TEXT_SHOWN ? `${full.slice(0, TEXT_SHOWN - 1)}…` : full, full };
}

/** Parameters as a definition list, one "key: value" line each (long values shortened, the
 *  whole value in the line's tooltip); "defaults" when there are none. */
export function paramList(params, { empty = "defaults", testid } = {}) {
  const entries = Object.entries(params || {});
  if (!entries.length) return el("span", { class: "muted", "data-testid": testid }, empty);
  return el("dl", { class: "param-list", "data-testid": testid }, entries.map(([name, value]) => {
    const { text, full } = paramText(value);
    return el("div", { title: `${name}: ${full}` }, el("dt", {}, name), el("dd", {}, text));
  }));
}

/** A run's or job's symbols as short text, all of them in `title`: for a table cell. */
export function symbolsCell(symbols) {
  const { text, full } = listText(symbols);
  return el("td", { class: "clip", title: full }, text || "—");
}

// -- formatting --------------------------------------------------------------------------------

const DASH = "—";
const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat("en-US", { maximumFractionDigits: 6 });

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);
export const fmtMoney = (x) => (isNum(x) ? money.format(x) : DASH);
export const fmtNum = (x, digits = 2) => (isNum(x) ? x.toFixed(digits) : x === "inf" ? "∞" : DASH);
/** A decision's target: a hold keeps the position as it is, so it has none ("keep"). */
export const fmtTarget = (d) => (d.action === "hold" && !isNum(d.target) ? "keep" : fmtNum(d.target));
export const fmtQty = (x) => (isNum(x) ? compact.format(x) : DASH);
export const fmtSigned = (x) => (isNum(x) ? (x > 0 ? "+" : "") + money.format(x) : DASH);
export const signClass = (x) => (isNum(x) && x !== 0 ? (x > 0 ? "up" : "down") : "");

/** A fraction as a percentage: 0.123 -> "12.30%"; `sign` adds a "+" to gains. */
export function fmtPct(x, { sign = false, digits = 2 } = {}) {
  if (!isNum(x)) return DASH;
  return (sign && x > 0 ? "+" : "") + (x * 100).toFixed(digits) + "%";
}

/** An ISO-8601 time as "YYYY-MM-DD HH:MM" in UTC, or just the date when it is midnight. */
export function fmtTime(iso) {
  if (!iso) return DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const text = date.toISOString();
  return text.endsWith("T00:00:00.000Z") ? text.slice(0, 10) : text.slice(0, 16).replace("T", " ");
}

/** How long ago (or until) an ISO time: "3m ago", "in 42s". */
export function fmtAgo(iso) {
  if (!iso) return DASH;
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const size = Math.abs(seconds);
  const text = size < 90 ? `${size}s` : size < 5400 ? `${Math.round(size / 60)}m` : size < 172800 ? `${Math.round(size / 3600)}h` : `${Math.round(size / 86400)}d`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

// Statistics named like fractions are shown as percentages.
const FRACTIONS = /return|cagr|drawdown$|volatility|win_rate|exposure|best_trade|worst_trade/;

/** A statistic from a run's `stats` by its name: percentages, days, counts or ratios. */
export function fmtStat(name, value) {
  if (value === null || value === undefined) return DASH;
  if (value === "inf") return "∞";
  if (typeof value !== "number") return String(value).slice(0, 19).replace("T", " ");
  if (FRACTIONS.test(name)) return fmtPct(value, { sign: /return|cagr/.test(name) });
  if (/duration/.test(name)) return `${value.toFixed(0)} d`;
  if (/^n_|trades$|count/.test(name)) return String(value);
  if (/equity|expectancy|commission/.test(name)) return fmtMoney(value);
  return value.toFixed(2);
}

const LABELS = { cagr: "CAGR", n_trades: "Trades", buy_and_hold_return: "Buy & hold return", avg_trade_return: "Avg. trade return" };
export const labelOf = (name) => LABELS[name] ?? name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

// Whether more of a statistic is better (1), worse (-1), or neither (absent).
const BETTER = {
  total_return: 1, cagr: 1, sharpe: 1, sortino: 1, calmar: 1, max_drawdown: 1, win_rate: 1,
  profit_factor: 1, expectancy: 1, avg_trade_return: 1, final_equity: 1, best_trade: 1, worst_trade: 1,
  max_drawdown_duration: -1, annual_volatility: -1, commissions: -1,
};

/** "up" when a change of `diff` in statistic `name` is an improvement, "down" when worse. */
export function betterClass(name, diff) {
  if (typeof diff !== "number" || diff === 0 || !BETTER[name]) return "";
  return diff * BETTER[name] > 0 ? "up" : "down";
}

// -- polling and the live stream ---------------------------------------------------------------

/** Call `fn` every `ms` (and at once unless `now` is false) while the tab is visible;
 *  returns a stop function. */
export function every(ms, fn, now = true) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (error) { showError(error); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  if (now) tick();
  else timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}

const handlers = new Map();
const resyncs = [];
let socket = null;
let retryMs = 1000;

/** Call `fn()` whenever the stream (re)connects or misses an event: it reads again from the
 *  API what the page shows, since the stream alone can no longer keep it true. Calls are
 *  folded: one at a time, and one more after it when asked meanwhile. */
export function onResync(fn) {
  const run = coalesced(fn);
  resyncs.push(() => run().catch(showError));
  if (!socket) connect();
}

const track = sequenced(() => { for (const run of resyncs) run(); });

/** Call `fn(data, message)` for each stream message of `type` ("*" for all). Connects the
 *  WebSocket on first use and reconnects with backoff when it drops. */
export function onStream(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
  if (!socket) connect();
}

function setLive(state, title) {
  const live = $("live");
  if (!live) return;
  live.hidden = false; // shown only on pages that follow the stream
  live.dataset.state = state;
  live.title = `Live stream: ${title}`;
  live.querySelector(".live-label").textContent = state === "on" ? "live" : state === "retry" ? "reconnecting" : "offline";
}

function connect() {
  setLive("retry", "connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}${API}/stream`);
  socket.addEventListener("open", () => { retryMs = 1000; setLive("on", "connected"); });
  socket.addEventListener("message", (event) => dispatch(event.data));
  socket.addEventListener("close", (event) => {
    setLive("retry", `closed (${event.code}), retrying`);
    // A refused session closes with a policy code: check it, which sends us to the login.
    if (event.code === 1008 || event.code === 4401 || event.code === 4403) api("/auth/me").catch(() => {});
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30000);
  });
}

function dispatch(raw) {
  let message;
  try { message = JSON.parse(raw); } catch { return; }
  if (!message || typeof message.type !== "string") return;
  track(message);
  for (const fn of [...(handlers.get(message.type) || []), ...(handlers.get("*") || [])]) {
    try { fn(message.data || {}, message); } catch (error) { console.error(error); }
  }
}

// -- shared look-ups ---------------------------------------------------------------------------

let statusPromise = null;

/** GET /status once per page load (mode badge, accounts, versions). */
export function serviceStatus() {
  statusPromise ??= getJson("/status");
  return statusPromise;
}

/** Fill a <select> with options [{value, label}], keeping `selected` when present. */
export function fillSelect(select, options, selected) {
  select.replaceChildren(...options.map((o) => el("option", { value: o.value, selected: o.value === selected }, o.label ?? o.value)));
}

/** Inputs for a strategy's parameters, prefilled with its defaults, inside `fieldset`. */
export function paramInputs(fieldset, params, prefix = "param") {
  const legend = fieldset.querySelector("legend");
  fieldset.replaceChildren(legend);
  const entries = Object.entries(params || {});
  fieldset.classList.toggle("none", entries.length === 0);
  for (const [name, value] of entries) {
    const type = typeof value === "number" ? "number" : "text";
    fieldset.append(el("label", {}, labelOf(name),
      el("input", { name: `${prefix}.${name}`, type, step: "any", value: Array.isArray(value) ? value.join(", ") : value, "data-testid": `${prefix}-${name}` })));
  }
}

/** A value typed in a parameter box: numbers as numbers, true/false as booleans. */
export function parseValue(text) {
  const value = String(text).trim();
  if (value === "") return null;
  if (value === "true" || value === "false") return value === "true";
  const n = Number(value);
  return Number.isFinite(n) ? n : value;
}

/** The parameters typed into `form` under `prefix`, as {name: value}. */
export function readParams(form, prefix = "param") {
  const params = {};
  for (const input of form.querySelectorAll(`[name^="${prefix}."]`)) {
    const value = parseValue(input.value);
    if (value !== null) params[input.name.slice(prefix.length + 1)] = value;
  }
  return params;
}

let strategiesPromise = null;
let symbolsPromise = null;
export const strategies = () => (strategiesPromise ??= getJson("/strategies").then((d) => d.items || []));
export const marketSymbols = () => (symbolsPromise ??= getJson("/market/symbols").then((d) => d.items || []));

// -- the page shell ----------------------------------------------------------------------------

function initShell() {
  const toggle = document.querySelector(".nav-toggle");
  const nav = $("nav");
  toggle?.addEventListener("click", () => {
    const open = nav.classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  $("logout")?.addEventListener("click", async () => {
    try { await api("/auth/logout", { method: "POST", redirect401: false }); } catch { /* leave anyway */ }
    location.assign("/login");
  });
  serviceStatus().then((status) => {
    const badge = $("mode-badge");
    if (!badge || !status) return;
    badge.dataset.mode = status.mode;
    badge.textContent = status.mode;
    badge.title = `${status.environment || ""} · ffe ${status.version || ""}`;
    badge.hidden = false;
  }).catch(showError);
}

/** Start a dashboard page: the shell (menu, logout, mode badge), then the page's own setup. */
export function startPage(setup) {
  initShell();
  Promise.resolve().then(setup).catch(showError);
}
