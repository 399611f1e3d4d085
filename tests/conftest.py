"""Shared fixtures of the whole test suite.

``seed`` is fresh on every run (so fast paths meet new random inputs each time) and printed,
so that a failure can be replayed with ``MAMBAKIT_TEST_SEED=<seed>``.
"""
from __future__ import annotations

import os
import secrets

import pytest


@pytest.fixture
def seed() -> int:
    value = os.environ.get("MAMBAKIT_TEST_SEED")
    s = int(value) if value is not None else secrets.randbits(31)
    print(f"random seed: {s} (replay with MAMBAKIT_TEST_SEED={s})")
    return s
