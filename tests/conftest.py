"""Shared fixtures: hardware loaded from the shipped hardware/*.yaml files (session-scoped, loaded once)."""
from pathlib import Path

import pytest

from archsim.config.hardware import Hardware, load_hardware

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
