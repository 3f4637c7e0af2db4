"""Shared by the Hugging Face config tests: the transcribed public config.json copies and how they are read."""
from __future__ import annotations

import json
import os
import warnings

from archsim.config.hf import UnmodelledFieldsWarning, workload_from_hf_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(ROOT, "tests", "data", "hf_configs")


def load(name: str):
    """The workload of the copy ``name`` (its fields archsim does not model are expected: their warning is muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnmodelledFieldsWarning)
        return workload_from_hf_config(os.path.join(CONFIGS, name))


def raw(name: str) -> dict:
    """The copy's config.json as read."""
    with open(os.path.join(CONFIGS, name, "config.json")) as f:
        return json.load(f)
