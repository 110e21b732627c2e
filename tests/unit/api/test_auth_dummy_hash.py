"""The hash checked for an unknown user or key costs what a real one costs."""

from __future__ import annotations

from argon2 import extract_parameters

from ffe.api import auth


def test_dummy_hash_when_compared_with_the_hasher_then_made_with_the_same_parameters():
    made = extract_parameters(auth._DUMMY_HASH)
    hasher = auth._hasher

    assert made.type == hasher.type
    assert (made.time_cost, made.memory_cost, made.parallelism) == (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
    )
    assert (made.hash_len, made.salt_len) == (hasher.hash_len, hasher.salt_len)
