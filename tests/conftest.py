"""Shared fixtures (hardware loaded from hardware/*.yaml, session-scoped) and hypothesis profiles.

Hypothesis: the ``ci`` profile (default) is derandomised and small, so CI is fast and repeatable;
``HYPOTHESIS_PROFILE=dev`` runs many more random examples for developers hunting counterexamples.
"""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from archsim.config.hardware import Hardware, load_hardware

settings.register_profile("ci", derandomize=True, max_examples=40, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
HARDWARE_DIR = REPO / "hardware"


@pytest.fixture(scope="session")
def h100() -> Hardware:
    return load_hardware(HARDWARE_DIR / "h100.yaml")


@pytest.fixture(scope="session")
def h800() -> Hardware:
    return load_hardware(HARDWARE_DIR / "h800.yaml")


@pytest.fixture(scope="session")
def h200() -> Hardware:
    return load_hardware(HARDWARE_DIR / "h200.yaml")
