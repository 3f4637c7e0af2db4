"""Workload = model (HF config fields) + scenario (formats, lengths, batch, devices, parallelism)."""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from archsim.config.deployment import DeploymentSpec, deployment_from_section
from archsim.config.model import ModelConfig, load_model_config, model_from_dict
from archsim.config.shipped import resolve_file, shipped_names
from archsim.config.training_recipe import TrainingRecipe, training_from_section
from archsim.config.yaml_io import Section, load_yaml
from archsim.dtypes import PLAIN_FORMATS, WEIGHT_FORMATS
from archsim.errors import ConfigError

# the format names archsim/dtypes.py defines (weights; activations and KV cache)
WEIGHT_CHOICES = tuple(WEIGHT_FORMATS)
PLAIN_CHOICES = tuple(PLAIN_FORMATS)
AUTO = "auto"
# Scenario defaults. They are scenario choices, not measurements: 4096 prompt tokens is the
# DeepSeek-V3 pre-training sequence length (DSV3-TR 4.2, "14.8T tokens at 4K"); 1024 output tokens
# is a common serving-benchmark output length (e.g. MLPerf-style and vLLM benchmark runs use 1K
# outputs); batch 1 is the latency case.
DEFAULT_PROMPT_LEN = 4096
DEFAULT_OUTPUT_LEN = 1024


@dataclass(frozen=True, kw_only=True)
class Parallelism:
    """Degrees per parallel dimension; ``"auto"`` lets the mapping layer choose."""

    tp: int | str = AUTO
    ep: int | str = AUTO
    dp: int | str = AUTO
    pp: int | str = AUTO


@dataclass(frozen=True, kw_only=True)
class ExpertLoadSpec:
    """How routed tokens spread over experts: ``uniform`` or Zipf with exponent ``zipf_s``."""

    kind: str = "uniform"
    zipf_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Formats (scenario names, see archsim.graph.precision), lengths, batch and deployment knobs."""

    weights: str
    expert_weights: str | None = None   # routed experts' format; None: as ``weights``
    kv_cache: str = "bf16"
    activations: str = "bf16"
    prompt_len: int = DEFAULT_PROMPT_LEN
    output_len: int = DEFAULT_OUTPUT_LEN
    batch: int = 1
    devices: int | str = AUTO
    parallelism: Parallelism = Parallelism()
    mtp: bool = False
    # with mtp: the conditional acceptance rate of each draft position (draft i is kept only if drafts 1..i-1 were),
    # so a decode step emits 1 + p1 + p1 p2 + ... tokens on average; () counts one token per step
    mtp_acceptance: tuple[float, ...] = ()
    expert_load: ExpertLoadSpec = ExpertLoadSpec()

    @property
    def tokens_per_decode_step(self) -> float:
        """Mean tokens a decode step emits: 1 without MTP drafts or a stated acceptance."""
        return tokens_per_step(self.mtp_acceptance) if self.mtp else 1.0


def tokens_per_step(acceptance: tuple[float, ...]) -> float:
    """1 + p1 + p1 p2 + ...: the mean tokens a speculative step emits with conditional acceptance rates per draft
    position (the verified token always counts)."""
    total, kept = 1.0, 1.0
    for p in acceptance:
        kept *= p
        total += kept
    return total


def check_acceptance(value, model: ModelConfig, file: str | None, path: str) -> tuple[float, ...]:
    """``mtp_acceptance`` as a tuple of rates in [0, 1], one per draft position, at most the model's MTP modules
    (a number is one position); ConfigError otherwise."""
    rates = (value,) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    ok = isinstance(rates, (list, tuple)) and all(
        isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in rates)
    if not ok or len(rates) > model.num_nextn_predict_layers:
        raise ConfigError(file, path, f"acceptance rates in [0, 1], at most one per MTP module "
                          f"(num_nextn_predict_layers = {model.num_nextn_predict_layers})", value)
    return tuple(float(p) for p in rates)


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A named model + scenario pair, as loaded from one workload YAML (with its optional ``deployment:``
    section: pools and layouts, config/deployment.py)."""

    name: str
    model: ModelConfig
    scenario: Scenario
    source_file: str
    deployment: DeploymentSpec | None = None
    description: str = ""  # the YAML's one-line ``description:`` (archsim list workloads prints it)
    training: TrainingRecipe | None = None  # a published training run (``training:``, archsim train --recipe)


def load_workload(path: str | os.PathLike) -> Workload:
    """Load a workload given as a YAML path, a shipped name (``kimi_k2``: ``workloads/kimi_k2.yaml``) or a Hugging
    Face ``config.json`` (the file or its directory). YAML is strict: unknown keys are errors with did-you-mean."""
    hf_config = hf_config_file(path)
    if hf_config is not None:
        return _workload_from_hf(hf_config)
    file = resolve_file(path, "workloads", "workload", "workload YAML")
    root = Section(load_yaml(file), file)
    name = root.str("name", default=os.path.splitext(os.path.basename(file))[0])
    description = root.str("description", default="")
    if root.has("model") == root.has("model_config"):
        raise ConfigError(file, "model", "exactly one of 'model' (HF fields) or 'model_config' (path to config.json)",
                          "both" if root.has("model") else "neither")
    if root.has("model"):
        model = model_from_dict(root.raw("model"), file, "model")
    else:
        rel = root.str("model_config")
        model = load_model_config(os.path.join(os.path.dirname(file), rel))
    scenario = scenario_from_section(root.section("scenario", default={}), model)
    deployment = deployment_from_section(root.section("deployment")) if root.has("deployment") else None
    training = training_from_section(root.section("training")) if root.has("training") else None
    root.finish()
    return Workload(name=name, model=model, scenario=scenario, source_file=file, deployment=deployment,
                    description=description, training=training)


def workload_names() -> list[str]:
    """The shipped workload names (``workloads/*.yaml`` stems), e.g. ``kimi_k2``."""
    return shipped_names("workloads")


def hf_config_file(arg) -> str | None:  # noqa: ANN001 - any argument; only names and paths qualify
    """The Hugging Face config file ``arg`` names: a ``.json`` file, or a directory holding ``config.json`` (a
    downloaded checkpoint); None for anything else (a workload YAML or a shipped name)."""
    if not isinstance(arg, (str, os.PathLike)):
        return None
    text = os.fspath(arg)
    if os.path.isdir(text) and os.path.isfile(os.path.join(text, "config.json")):
        return os.path.join(text, "config.json")
    return text if text.lower().endswith(".json") else None


def _workload_from_hf(file: str) -> Workload:
    """A Workload from a Hugging Face config file: archsim.config.hf when it is installed (it maps the config
    families and their quantization blocks), else the ``model_config:`` path of a workload YAML (load_model_config)
    with the default scenario."""
    from_hf = _hf_loader()
    if from_hf is not None:
        return from_hf(file)
    model = load_model_config(file)
    scenario = scenario_from_section(Section({}, file, "scenario"), model)
    folder = os.path.basename(os.path.dirname(os.path.abspath(file)))
    name = folder if os.path.basename(file) == "config.json" and folder else os.path.splitext(os.path.basename(file))[0]
    return Workload(name=name, model=model, scenario=scenario, source_file=file)


def _hf_loader():  # noqa: ANN202 - a callable or None
    """``archsim.config.hf.workload_from_hf_config``, or None while that module is absent from the package."""
    if importlib.util.find_spec("archsim.config.hf") is None:
        return None
    from archsim.config.hf import workload_from_hf_config  # lazy: a JSON-only path, and hf imports this module

    return workload_from_hf_config


def scenario_from_section(s: Section, model: ModelConfig) -> Scenario:
    """Validate the ``scenario:`` mapping (ConfigError naming file and field)."""
    scenario = Scenario(
        weights=s.str("weights", choices=WEIGHT_CHOICES, default="bf16"),
        expert_weights=s.str("expert_weights", choices=WEIGHT_CHOICES, default=None),
        kv_cache=s.str("kv_cache", choices=PLAIN_CHOICES, default="bf16"),
        activations=s.str("activations", choices=PLAIN_CHOICES, default="bf16"),
        prompt_len=s.int("prompt_len", minimum=1, default=DEFAULT_PROMPT_LEN),
        output_len=s.int("output_len", minimum=0, default=DEFAULT_OUTPUT_LEN),
        batch=s.int("batch", minimum=1, default=1),
        devices=_int_or_auto(s, "devices"),
        parallelism=_parallelism(s),
        mtp=s.bool("mtp", default=False),
        mtp_acceptance=check_acceptance(s.raw("mtp_acceptance"), model, s.file, s.child_path("mtp_acceptance"))
        if s.has("mtp_acceptance") else (),
        expert_load=_expert_load(s),
    )
    if scenario.mtp_acceptance and not scenario.mtp:
        raise ConfigError(s.file, s.child_path("mtp"), "true with mtp_acceptance (the drafts it rates)", False)
    check_scenario(scenario, model, s.file, s.path)
    return scenario


def check_scenario(scenario: Scenario, model: ModelConfig, file: str | None = None, path: str = "scenario") -> None:
    """Checks that tie a scenario to its model (used for YAML scenarios and for API/CLI overrides)."""
    where = (path + ".") if path else ""
    if scenario.mtp and not model.num_nextn_predict_layers:
        raise ConfigError(file, f"{where}mtp", "false (model has num_nextn_predict_layers = 0)", True)
    limit = model.max_position_embeddings
    if limit and scenario.prompt_len + scenario.output_len > limit:
        raise ConfigError(file, f"{where}prompt_len",
                          f"prompt_len + output_len <= max_position_embeddings={limit}",
                          scenario.prompt_len + scenario.output_len)


def _int_or_auto(s: Section, key: str) -> int | str:
    value = s.raw(key, default=AUTO)
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(s.file, s.child_path(key), "a positive integer or 'auto'", value)
    return value


def _parallelism(s: Section) -> Parallelism:
    value = s.raw("parallelism", default=AUTO)
    if value == AUTO:
        return Parallelism()
    p = s.section("parallelism")
    return Parallelism(**{k: _int_or_auto(p, k) for k in ("tp", "ep", "dp", "pp")})


def _expert_load(s: Section) -> ExpertLoadSpec:
    value = s.raw("expert_load", default="uniform")
    if value == "uniform":
        return ExpertLoadSpec()
    if not isinstance(value, dict):
        raise ConfigError(s.file, s.child_path("expert_load"), "'uniform' or {zipf: s}", value)
    e = s.section("expert_load")
    return ExpertLoadSpec(kind="zipf", zipf_s=e.number("zipf", minimum=0.0))
