// Health: readiness checks (no auth), liveness, and what the service runs.
import {
  $, api, el, every, fillTable, fmtTime, getJson, num, setText, showError, startPage, stateBadge, td,
} from "../app.js";

function checkRow([name, c]) {
  const state = c.ok ? "ok" : c.critical ? "fail" : "degraded";
  return el("tr", {},
    td(name),
    el("td", {}, el("span", { class: "state", "data-status": state }, c.ok ? "ok" : "failing")),
    td(c.critical ? "yes" : "no"),
    num(typeof c.latency_ms === "number" ? `${c.latency_ms.toFixed(1)} ms` : "—"),
    el("td", { class: "text" }, c.detail ?? ""));
}

async function loadReady() {
  // 503 means "not ready" and still carries the checks.
  const { data } = await api("/health/ready", { okStatuses: [503] });
  stateBadge($("health-status"), data?.status || "fail");
  fillTable("health-table", Object.entries(data?.checks || {}), checkRow, "No checks reported");
  setText("checked-at", `checked ${fmtTime(new Date().toISOString())} UTC`);
}

async function loadStatus() {
  const [status, live] = await Promise.all([
    getJson("/status"),
    api("/health/live").then((r) => r.data?.status || "ok").catch(() => "down"),
  ]);
  setText("sys-version", status.version ?? "—");
  setText("sys-environment", status.environment ?? "—");
  setText("sys-mode", status.mode ?? "—");
  setText("sys-redis", status.redis ? "connected" : "not used");
  setText("sys-jobs", `${status.jobs?.running ?? 0} / ${status.jobs?.queued ?? 0}`);
  const workers = status.jobs?.workers ?? 0;
  setText("sys-workers", workers ? String(workers) : "none: queued jobs wait (start `ffe worker`)");
  setText("sys-live", live);
  fillTable("health-agents", status.agents || [], (a) => el("tr", {},
    td(a.account), el("td", {}, el("span", { class: "state", "data-status": a.status }, a.status)),
    td(a.owner || "—"), td(fmtTime(a.lease_expires_at)), td(fmtTime(a.last_bar_time))), "No agent has run");
}

startPage(() => {
  const refresh = () => Promise.all([loadReady(), loadStatus()]);
  $("refresh").addEventListener("click", () => refresh().catch(showError));
  every(10000, refresh);
});
