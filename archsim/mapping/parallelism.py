"""The Parallelism record: how a model is laid out on devices (TP, EP, PP, DP, CP, micro-batches)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from archsim.errors import ConfigError

ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True, kw_only=True)
class Parallelism:
    """A layout of ``devices = tp * cp * dp * pp`` chips.

    - ``tp``: tensor parallel: attention heads, dense/shared FFN width and vocab split ``tp`` ways
      (inside a node); an all-reduce follows o_proj and each dense / shared-expert down_proj.
    - ``cp``: context (sequence) parallel: a long prompt's tokens split ``cp`` ways (ring attention).
    - ``dp``: data-parallel replicas of attention inside one pipeline stage. With ``ep > tp`` this is
      DeepSeek's attention-DP + MoE-EP: attention replicated ``dp`` ways, routed experts split over
      ``ep`` of the stage's ``tp * cp * dp`` chips.
    - ``ep``: expert parallel for routed experts; a multiple of ``tp`` dividing ``tp * cp * dp``.
    - ``pp``: pipeline stages (layers split evenly, embedding on the first stage, head on the last).
    - ``micro_batches``: micro-batches per step (two interleave compute with communication; in a
      pipeline they fill the stages).
    - ``redundant_experts``: extra expert replicas per EP group (DeepSeek-V3 prefill: 32), spread
      over the EP ranks.
    - ``zero_stage``: ZeRO sharding of optimizer states (1), + gradients (2), + parameters (3), training only.
    """

    tp: int = 1
    ep: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    micro_batches: int = 1
    redundant_experts: int = 0
    zero_stage: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "ep", "pp", "dp", "cp", "micro_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(None, f"parallelism.{name}", "a positive integer", value)
        if isinstance(self.redundant_experts, bool) or not isinstance(self.redundant_experts, int) \
                or self.redundant_experts < 0:
            raise ConfigError(None, "parallelism.redundant_experts", "an integer >= 0", self.redundant_experts)
        if self.zero_stage not in ZERO_STAGES:
            raise ConfigError(None, "parallelism.zero_stage", "0, 1, 2 or 3", self.zero_stage)
        stage = self.tp * self.cp * self.dp
        if self.ep > 1 and (self.ep % self.tp or stage % self.ep):
            raise ConfigError(None, "parallelism.ep", f"a multiple of tp={self.tp} dividing tp*cp*dp={stage}",
                              self.ep)

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
    def sp(self) -> int:
        """Sequence parallelism for long prompts is context parallelism here."""
        return self.cp

    @property
    def expert_dp(self) -> int:
        """Replicas of each routed expert across the stage (its data-parallel degree for gradients)."""
        return self.stage_devices // self.ep

    def to_dict(self) -> dict:
        """The degrees as a dict, with ``devices`` and ``attn_dp`` added."""
        out = asdict(self)
        out["devices"] = self.devices
        out["attn_dp"] = self.attn_dp
        return out

    def label(self) -> str:
        """Short text form, e.g. ``TP1 EP8 PP1 DP8 MB2``."""
        return (f"TP{self.tp} EP{self.ep} PP{self.pp} DP{self.dp}" + (f" CP{self.cp}" if self.cp > 1 else "")
                + f" MB{self.micro_batches}")
