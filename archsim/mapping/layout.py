"""Layout: how many devices a deployment uses and how the model is split over them (TP, EP, DP, PP)."""
from __future__ import annotations

from dataclasses import dataclass

from archsim.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Layout:
    """A parallel layout of one model replica group.

    ``devices = tp * dp * pp``. Attention heads, dense/shared FFN width and the vocabulary are split
    ``tp`` ways inside a pipeline stage; sequences are split ``dp`` ways (each DP rank holds the KV
    of its own sequences); layers are split into ``pp`` consecutive stages; routed experts are split
    ``ep`` ways across the tp * dp devices of a stage (DeepSeek-style EP over the attention ranks),
    so ``ep`` must divide ``tp * dp``.
    """

    devices: int
    tp: int = 1
    ep: int = 1
    dp: int = 1
    pp: int = 1

    def __post_init__(self) -> None:
        for name in ("devices", "tp", "ep", "dp", "pp"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(None, f"parallelism.{name}", "a positive integer", value)
        if self.tp * self.dp * self.pp != self.devices:
            raise ConfigError(None, "parallelism", f"tp*dp*pp == devices ({self.devices})",
                              f"tp={self.tp}, dp={self.dp}, pp={self.pp}")
        if (self.tp * self.dp) % self.ep:
            raise ConfigError(None, "parallelism.ep", f"a divisor of tp*dp = {self.tp * self.dp}", self.ep)

    @staticmethod
    def single() -> "Layout":
        """One device, nothing split."""
        return Layout(devices=1)

    def describe(self) -> str:
        """Short text such as ``16 devices (tp 8, ep 16, dp 2, pp 1)``."""
        return f"{self.devices} devices (tp {self.tp}, ep {self.ep}, dp {self.dp}, pp {self.pp})"
