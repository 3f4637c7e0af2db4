"""Fixtures for the fidelity tests: the H800 with its kernel-efficiency fields."""
from pathlib import Path

import pytest

from archsim.config.hardware import Hardware, load_hardware

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def h800k() -> Hardware:
    """hardware/h800.yaml, which carries the ``kernel:`` section the efficiency models need."""
    hw = load_hardware(REPO / "hardware" / "h800.yaml")
    assert getattr(hw, "kernel", None) is not None, "hardware/h800.yaml lacks its kernel: section"
    return hw
