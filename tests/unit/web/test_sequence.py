"""The dashboard follows the live stream's numbers: a jump in ``seq`` or a new connection
makes the page read again what it shows; decisions read again keep the stream's newer
ones; the Agent page's bar facts take the newest of the journal and the stream."""

from __future__ import annotations

import json

from tests.support.node import run_module

# Just enough of a browser for app.js: no page elements, and a WebSocket the test drives.
FAKE_BROWSER = """
globalThis.document = { body: { dataset: {} }, hidden: false, getElementById: () => null };
globalThis.location = { protocol: "http:", host: "test", pathname: "/agent", search: "" };
globalThis.sockets = [];
globalThis.WebSocket = class {
  constructor(url) { this.url = url; this.listeners = {}; sockets.push(this); }
  addEventListener(type, fn) { (this.listeners[type] ??= []).push(fn); }
  emit(type, event) { for (const fn of this.listeners[type] || []) fn(event); }
  receive(message) { this.emit("message", { data: JSON.stringify(message) }); }
};
globalThis.fetch = async () => { throw new Error("no network in this test"); };
const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
"""


def _event(seq: int, source: str = "a", kind: str = "decision") -> dict[str, object]:
    return {"type": kind, "source": source, "seq": seq, "data": {"n": seq}}


def test_sequenced_when_numbers_jump_or_connection_is_new_then_resync():
    hello = {"type": "hello", "data": {"source": "a", "seq": 3}}
    messages = [
        hello,
        _event(4),
        _event(5),
        _event(7),  # 6 was missed
        _event(8),
        _event(1, "b"),  # another worker, from its first event: nothing missed
        _event(3, "b"),  # its 2 was missed
        hello,  # reconnected
        _event(4),
    ]
    script = (
        'import { sequenced } from "./sequence.js";\n'
        "const calls = [];\n"
        "const track = sequenced((why) => calls.push(why));\n"
        f"for (const m of {json.dumps(messages)}) track(m);\n"
        "console.log(JSON.stringify(calls));"
    )

    assert run_module(script) == ["connected", "missed", "missed", "connected"]


def test_sequenced_when_a_worker_is_first_heard_mid_stream_past_one_then_resync():
    messages = [{"type": "hello", "data": {"source": "a", "seq": 0}}, _event(9, "b")]
    script = (
        'import { sequenced } from "./sequence.js";\n'
        "const calls = [];\n"
        "const track = sequenced((why) => calls.push(why));\n"
        f"for (const m of {json.dumps(messages)}) track(m);\n"
        "console.log(JSON.stringify(calls));"
    )

    assert run_module(script) == ["connected", "missed"]


def test_dashboard_when_stream_misses_an_event_then_page_reads_again_and_still_gets_events():
    script = (
        FAKE_BROWSER + 'const { onResync, onStream } = await import("./app.js");\n'
        "const reads = [];\n"
        "const seen = [];\n"
        "onResync(async () => { reads.push(seen.length); await tick(); });\n"
        "onStream('decision', (data) => seen.push(data.n));\n"
        "const socket = sockets[0];\n"
        "socket.emit('open', {});\n"
        "socket.receive({ type: 'hello', data: { source: 'a', seq: 0 } });\n"
        "await tick(); await tick();\n"
        "for (const seq of [1, 2, 4, 5]) socket.receive({ type: 'decision', source: 'a', seq,"
        " data: { n: seq } });\n"
        "await tick(); await tick();\n"
        "console.log(JSON.stringify({ sockets: sockets.length, reads, seen }));"
    )

    found = run_module(script)

    # once on connecting (nothing seen yet), once on the hole where 3 should have come
    assert found == {"sockets": 1, "reads": [0, 2], "seen": [1, 2, 4, 5]}


def test_dashboard_when_stream_reconnects_then_page_reads_again():
    script = (
        FAKE_BROWSER + 'const { onResync } = await import("./app.js");\n'
        "let reads = 0;\n"
        "onResync(async () => { reads += 1; });\n"
        "sockets[0].receive({ type: 'hello', data: { source: 'a', seq: 10 } });\n"
        "await tick();\n"
        "sockets[0].receive({ type: 'equity', source: 'a', seq: 11, data: {} });\n"
        "await tick();\n"
        "sockets[0].receive({ type: 'hello', data: { source: 'a', seq: 40 } });\n"
        "await tick();\n"
        "console.log(JSON.stringify(reads));"
    )

    assert run_module(script) == 2


def test_coalesced_when_called_while_running_then_one_more_run_after():
    script = (
        'import { coalesced } from "./sequence.js";\n'
        "let runs = 0;\n"
        "const run = coalesced(async () => { runs += 1;"
        " await new Promise((r) => setTimeout(r, 10)); });\n"
        "await Promise.all([run(), run(), run(), run()]);\n"
        "console.log(JSON.stringify(runs));"
    )

    assert run_module(script) == 2


def test_merge_decisions_when_read_again_then_streamed_newer_ones_stay_on_top_once():
    journal = [
        {"id": 2, "time": "2018-01-03", "symbol": "SP500", "action": "hold"},
        {"id": 1, "time": "2018-01-02", "symbol": "SP500", "action": "buy"},
    ]
    shown = [
        {"time": "2018-01-05", "symbol": "SP500", "action": "sell"},  # streamed, not journaled
        {"time": "2018-01-03", "symbol": "SP500", "action": "hold"},  # streamed and journaled
    ]
    script = (
        'import { mergeDecisions } from "./sequence.js";\n'
        f"const merged = mergeDecisions({json.dumps(journal)}, {json.dumps(shown)}, 50);\n"
        "console.log(JSON.stringify(merged.map((d) => [d.time, d.id ?? null])));"
    )

    assert run_module(script) == [["2018-01-05", None], ["2018-01-03", 2], ["2018-01-02", 1]]


def test_latest_bar_when_stream_is_ahead_of_the_journal_then_the_streams():
    script = (
        'import { latestBar } from "./sequence.js";\n'
        "const journal = { time: '2018-01-02T00:00:00+00:00', bar: 10 };\n"
        "const live = { time: '2018-05-02T00:00:00+00:00', bar: 90 };\n"
        "console.log(JSON.stringify([latestBar(journal, live).bar, latestBar(live, journal).bar,"
        " latestBar(journal, null).bar]));"
    )

    assert run_module(script) == [90, 90, 10]
