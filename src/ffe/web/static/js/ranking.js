// Ranking a sweep's rows by its metric, best first. The server says which way is better in the
// result's `direction` ("maximize" or "minimize", from ffe.backtest.objective); sweeps stored
// before it did were ranked highest first, so that is what a missing direction means.

/** Whether `a` is a better value than `b` of a metric ranked in `direction`. */
export function isBetter(a, b, direction) {
  return direction === "minimize" ? a < b : a > b;
}

/** `rows` (each with a numeric or null `value`) sorted best first, rows without a value last. */
export function rankRows(rows, direction) {
  const sign = direction === "minimize" ? 1 : -1;
  const missing = (r) => typeof r.value !== "number";
  return [...rows].sort((a, b) => missing(a) - missing(b) || (missing(a) ? 0 : sign * (a.value - b.value)));
}

/** "lower is better" or "higher is better", for a title; "" when the direction is unknown. */
export function describeDirection(direction) {
  if (direction === "minimize") return "lower is better";
  return direction === "maximize" ? "higher is better" : "";
}
