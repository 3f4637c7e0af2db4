"""A published training run as data: the optional ``training:`` section of a workload YAML (the recipe
``archsim train --recipe published`` reproduces). Every key is one of ``archsim train``'s flags under its argparse
name; the loader is strict (unknown keys are errors)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from archsim.config.yaml_io import Section
from archsim.errors import ConfigError

SCHEDULES = ("1f1b", "interleaved", "dualpipe")
PRECISIONS = ("bf16", "fp8")
RECOMPUTE = ("none", "selective", "full")
OPTIMIZERS = ("adamw", "muon")


@dataclass(frozen=True, kw_only=True)
class TrainingRecipe:
    """The recipe's flags (``archsim train`` names) and where it was published."""

    source: str
    flags: Mapping[str, Any]


def training_from_section(s: Section) -> TrainingRecipe:
    """Read a ``training:`` section strictly."""
    flags = {
        "devices": s.int("devices", minimum=1),
        "seq_len": s.int("seq_len", minimum=1),
        "global_batch": s.int("global_batch", minimum=1),
        "tokens": s.number("tokens", minimum=1.0),
        "tp": s.int("tp", minimum=1, default=None),
        "moe_ep": s.int("ep", minimum=1, default=None),
        "pp": s.int("pp", minimum=1, default=None),
        "attn_dp": s.int("dp", minimum=1, default=None),
        "micro_batches": s.int("micro_batches", minimum=1, default=None),
        "zero": s.int("zero_stage", minimum=0, maximum=3, default=None),
        "precision": s.str("precision", choices=PRECISIONS, default=None),
        "optimizer": s.str("optimizer", choices=OPTIMIZERS, default=None),
        "recompute": s.str("recompute", choices=RECOMPUTE, default=None),
        "schedule": s.str("schedule", choices=SCHEDULES, default=None),
        "comm_sms": s.int("comm_sms", minimum=0, default=None),
        "mtp": s.bool("mtp", default=None),
        "fp8_activation_cache": s.bool("fp8_activation_cache", default=None),
        "recompute_projections": s.str("recompute_projections", default=None),
        "attention_output_format": s.str("attention_output_format", choices=("bf16", "e5m6"), default=None),
    }
    source = s.str("source")
    s.finish()
    recipe = TrainingRecipe(source=source, flags={k: v for k, v in flags.items() if v is not None})
    parts = [recipe.flags.get(k) for k in ("tp", "moe_ep", "pp", "attn_dp")]
    if all(p is not None for p in (parts[0], parts[2], parts[3])) and \
            parts[0] * parts[2] * parts[3] != recipe.flags["devices"]:
        raise ConfigError(s.file, s.child_path("devices"), "tp x pp x dp", recipe.flags["devices"])
    return recipe
