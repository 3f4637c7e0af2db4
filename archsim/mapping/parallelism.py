"""The Parallelism record: how a model is laid out on the devices of one instance (attention TP/CP/DP, MoE TP x EP,
redundant expert slots, PP, micro-batches)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from archsim.errors import ConfigError

ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True, kw_only=True)
class Parallelism:
    """A layout of ``devices = tp * cp * dp * pp`` chips.

    - ``tp``: attention tensor parallel: attention heads, dense/shared FFN width and vocab split ``tp`` ways
      (inside a node); an all-reduce follows o_proj and each dense / shared-expert down_proj.
    - ``cp``: context (sequence) parallel: a long prompt's tokens split ``cp`` ways (ring attention).
    - ``dp``: attention data-parallel replicas inside one pipeline stage (DeepSeek's attention-DP; SGLang
      ``--dp`` with ``--enable-dp-attention``). ``attn_dp`` is its alias.
    - ``ep`` (alias ``moe_ep``) and ``moe_tp``: the routed experts of a stage's ``tp * cp * dp`` chips run on
      MoE groups of ``moe_tp * ep`` chips: each expert's FFN width split ``moe_tp`` ways (MoE-TP, SGLang's and
      vLLM's default for DeepSeek on one node), the experts split ``ep`` ways (MoE-EP). A group holds whole
      attention TP groups (``moe_tp * ep`` a multiple of ``tp``) and divides the stage; the stage holds
      ``expert_dp`` groups (replicas of each expert: 1 in inference, DP replicas in training).
    - ``pp``: pipeline stages (layers split evenly, embedding on the first stage, head on the last).
    - ``micro_batches``: micro-batches per step (two interleave compute with communication; in a pipeline
      they fill the stages); None: chosen per phase by price (inference).
    - ``redundant_experts``: extra expert slots per MoE group (EPLB; DeepSeek-V3 prefill: 32 over EP32),
      ``n_routed_experts + redundant_experts`` slots spread evenly over the ``ep`` ranks (the model-dependent
      check is ``check_expert_slots``).
    - ``zero_stage``: ZeRO sharding of optimizer states (1), + gradients (2), + parameters (3), training only.
    """

    tp: int = 1
    ep: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    moe_tp: int = 1
    micro_batches: int | None = 1
    redundant_experts: int = 0
    zero_stage: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "ep", "pp", "dp", "cp", "moe_tp"):
            _positive(name, getattr(self, name))
        if self.micro_batches is not None:
            _positive("micro_batches", self.micro_batches)
        if isinstance(self.redundant_experts, bool) or not isinstance(self.redundant_experts, int) \
                or self.redundant_experts < 0:
            raise ConfigError(None, "parallelism.redundant_experts", "an integer >= 0", self.redundant_experts)
        if self.zero_stage not in ZERO_STAGES:
            raise ConfigError(None, "parallelism.zero_stage", "0, 1, 2 or 3", self.zero_stage)
        stage, group = self.stage_devices, self.moe_group
        if group > 1 and (group % self.tp or stage % group):
            raise ConfigError(None, "parallelism.moe_tp*ep",
                              f"a multiple of tp={self.tp} dividing tp*cp*dp={stage} (moe_tp={self.moe_tp}, "
                              f"ep={self.ep})", group)

    @property
    def devices(self) -> int:
        return self.tp * self.cp * self.dp * self.pp

    @property
    def stage_devices(self) -> int:
        """Chips in one pipeline stage."""
        return self.tp * self.cp * self.dp

    @property
    def attn_dp(self) -> int:
        """Attention data-parallel replicas per stage (DeepSeek's attention-DP)."""
        return self.dp

    @property
    def moe_ep(self) -> int:
        """Expert-parallel ranks of a MoE group (the same as ``ep``)."""
        return self.ep

    @property
    def moe_group(self) -> int:
        """Chips of one MoE group: ``moe_tp * ep``."""
        return self.moe_tp * self.ep

    @property
    def sp(self) -> int:
        """Sequence parallelism for long prompts is context parallelism here."""
        return self.cp

    @property
    def expert_dp(self) -> int:
        """Replicas of each routed expert across the stage (its data-parallel degree for gradients)."""
        return self.stage_devices // self.moe_group

    def to_dict(self) -> dict:
        """The degrees as a dict, with ``devices``, ``attn_dp`` and ``moe_ep`` added (micro_batches None: auto)."""
        out = asdict(self)
        out["devices"] = self.devices
        out["attn_dp"] = self.attn_dp
        out["moe_ep"] = self.moe_ep
        return out

    def label(self) -> str:
        """Short text form, e.g. ``TP1 EP8 PP1 DP8 MB2`` (``MoE-TP8`` and ``R32`` when set)."""
        mb = "auto" if self.micro_batches is None else self.micro_batches
        return (f"TP{self.tp} EP{self.ep} PP{self.pp} DP{self.dp}" + (f" CP{self.cp}" if self.cp > 1 else "")
                + (f" MoE-TP{self.moe_tp}" if self.moe_tp > 1 else "")
                + (f" R{self.redundant_experts}" if self.redundant_experts else "") + f" MB{mb}")


def check_expert_slots(par: Parallelism, n_routed_experts: int) -> None:
    """ConfigError unless the ``n_routed_experts + redundant_experts`` expert slots spread evenly over the EP
    ranks (DeepSeek's decode unit: 256 + 32 = 288 slots over EP144, 2 per GPU)."""
    slots = n_routed_experts + par.redundant_experts
    if slots % par.ep:
        raise ConfigError(None, "parallelism.ep", f"a divisor of n_routed_experts + redundant_experts ({slots})",
                          par.ep)


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(None, f"parallelism.{name}", "a positive integer", value)
