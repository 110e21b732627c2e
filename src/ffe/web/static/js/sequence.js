// The live stream's order: each server process numbers its events one by one (`source`,
// `seq`), and the hello of a connection says where the numbers of its own process stand.
// A jump means events were missed (a slow connection, a worker's Redis outage), and a new
// connection may have missed anything: in both cases the page reads again what it shows.
// No DOM here, so Node runs it in the tests.

/** The last number seen from each source of one connection. */
export class StreamOrder {
  constructor() {
    this.last = new Map();
  }

  /** A new connection: forget the old numbers, start from the hello's. */
  start(hello) {
    this.last.clear();
    if (hello && typeof hello.source === "string" && Number.isInteger(hello.seq)) {
      this.last.set(hello.source, hello.seq);
    }
  }

  /** Whether `message` comes right after what this connection saw from its source. A source
   *  first heard of mid-connection (another worker) must start at 1, or some were missed. */
  follows(message) {
    const { source, seq } = message;
    if (typeof source !== "string" || !source || !Number.isInteger(seq)) return true;
    const last = this.last.get(source);
    this.last.set(source, Math.max(last ?? 0, seq));
    return last === undefined ? seq === 1 : seq <= last + 1;
  }
}

/** A function to call with each stream message: it calls `resync(reason)` on a hello
 *  ("connected") and when a message shows that some were missed ("missed"). */
export function sequenced(resync) {
  const order = new StreamOrder();
  return (message) => {
    if (message.type === "hello") {
      order.start(message.data);
      resync("connected");
    } else if (!order.follows(message)) {
      resync("missed");
    }
  };
}

/** `fn` made safe to call often: one call runs at a time, and calls made while it runs
 *  are folded into one more run after it. */
export function coalesced(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await fn();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}

/** Of two `{time, bar}` (either may be missing), the one at the later time. */
export function latestBar(a, b) {
  if (!b || !b.time) return a ?? { time: null, bar: null };
  if (!a || !a.time) return { ...b };
  return new Date(b.time) > new Date(a.time) ? { ...b } : a;
}

/** Decisions newest first, at most `keep`: the journal's page `read`, and before them those
 *  of `shown` newer than its newest (the stream's, not journaled yet). Decisions are the same
 *  when their id, or else their time and symbol, are. */
export function mergeDecisions(read, shown, keep) {
  const key = (d) => (d.id !== undefined && d.id !== null ? `id:${d.id}` : `${d.time}|${d.symbol}`);
  const newest = read.length ? new Date(read[0].time) : null;
  const fresher = shown.filter((d) => d.id === undefined && (!newest || new Date(d.time) > newest));
  const seen = new Set();
  const merged = [];
  for (const d of [...fresher, ...read, ...shown]) {
    const k = key(d);
    const moment = `${d.time}|${d.symbol}`;
    if (seen.has(k) || seen.has(moment)) continue;
    seen.add(k);
    seen.add(moment);
    merged.push(d);
  }
  return merged
    .sort((x, y) => new Date(y.time) - new Date(x.time))
    .slice(0, keep);
}
