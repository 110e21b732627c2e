"""The agent's checkpoint: typed, stored as JSON, read back the same, old documents read with
defaults, and a reset lifting its halts."""

from __future__ import annotations

from datetime import date

from ffe.agent.persist import Checkpoint
from ffe.risk.rules import RiskContext


def test_checkpoint_round_trips_through_its_json_document() -> None:
    context = RiskContext()
    context.emergency_stop("emergency stop by api")
    made = Checkpoint(
        bar=41,
        peak=10_500.0,
        halted_at=40,
        halt_reason="drawdown reached 21.0%, limit 20.0%",
        trades=3,
        risk=context.to_dict(),
        flattened_day=date(2024, 3, 1),
        llm_failures=5,
    )
    stored = made.as_dict()
    assert stored["flattened_day"] == "2024-03-01"
    assert Checkpoint.of(stored) == made


def test_a_document_without_newer_keys_reads_with_defaults() -> None:
    assert Checkpoint.of(None) is None
    old = Checkpoint.of({"bar": 7})
    assert old == Checkpoint(bar=7)
    assert old is not None
    assert (old.peak, old.risk, old.trades, old.llm_failures) == (None, None, 0, 0)


def test_lifted_clears_the_halts_and_the_emergency_stop_only() -> None:
    context = RiskContext()
    context.emergency_stop("emergency stop by cli")
    context.trades_today = 4
    halted = Checkpoint(bar=9, peak=1.0, halted_at=8, halt_reason="x", risk=context.to_dict())
    lifted = halted.lifted()
    assert (lifted.halted_at, lifted.halt_reason, lifted.bar, lifted.peak) == (None, None, 9, 1.0)
    assert lifted.risk is not None
    restored = RiskContext.from_dict(lifted.risk)
    assert restored.emergency_halt_reason is None
    assert restored.trades_today == 4
