"""Models shared by the mapping tests (loaded once per session; ModelConfig is immutable)."""
from pathlib import Path

import pytest

from archsim.config.workload import load_workload

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dsv3():
    return load_workload(REPO / "workloads/deepseek_v3.yaml").model


@pytest.fixture(scope="session")
def llama():
    return load_workload(REPO / "workloads/llama3_405b.yaml").model
