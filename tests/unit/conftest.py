"""Unit-tier fixtures: the contract tests' models, each trained once per session on the small world."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def trained(small_dataset):
    """``trained(key, make)``: (model, FitReport) of ``make()`` fitted with early stopping on the small
    world's validation split, built on first use and shared by every test that asks by the same key."""
    cache = {}

    def get(key, make):
        if key not in cache:
            model = make()
            validation = small_dataset.validation(1)
            cache[key] = model, model.fit(small_dataset, before=validation.boundary, validation=validation)
        return cache[key]

    return get
