"""Hardware -> Geometry: the sizes that shape traffic and tiling (memory levels, SRAM and registers per SM, L2,
SM count, the GEMM tile menu). No rates: those are ``cost/rates.py``'s, so a sweep of rates reuses the work.
"""
from __future__ import annotations

from dataclasses import dataclass

from archsim.config.hardware import Hardware


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """The sizes of a chip that shape traffic and tiling."""

    level_names: tuple[str, ...]
    main: str
    sram_per_sm_bytes: float
    l2_bytes: float
    register_per_sm_bytes: float | None
    sm_count: int
    # the GEMM library's tile menu (kernel.gemm_block_m / gemm_block_n / gemm_max_tile_elements / gemm_multicast);
    # empty without one (docs/fidelity.md)
    gemm_block_m: tuple[int, ...] = ()
    gemm_block_n: tuple[int, ...] = ()
    gemm_max_tile_elements: int = 0
    gemm_multicast: int = 1
    # the dtypes the matrix engine lists, when the chip has a GEMM tile menu (its GEMMs are tiled); else empty
    matrix_dtypes: tuple[str, ...] = ()

    @property
    def has_tile_menu(self) -> bool:
        return bool(self.gemm_block_m and self.gemm_block_n and self.gemm_max_tile_elements)

    @staticmethod
    def of(hw: Hardware) -> "Geometry":
        """The geometry of ``hw``: SRAM and registers per SM (per unit, else capacity over units or SMs), L2 size,
        and the tile menu of its ``kernel:`` fields."""
        names = tuple(hw.memory)
        shared = hw.memory.get("shared")
        if shared is None:
            sram = 0.0
        elif shared.per_unit_bytes is not None:
            sram = shared.per_unit_bytes
        else:
            sram = shared.capacity_bytes / max(1, shared.units or hw.sm_count)
        l2 = hw.memory.get("l2")
        regs = hw.memory.get("registers")
        reg_bytes = None
        if regs is not None:
            reg_bytes = regs.per_unit_bytes or regs.capacity_bytes / max(1, regs.units or hw.sm_count)
        fields = hw.kernel
        tiles = fields is not None and fields.has_tiles
        matrix_dtypes: tuple[str, ...] = ()
        if tiles and sram > 0:
            try:
                matrix_dtypes = tuple(hw.engine_for("matrix").peak_flop_per_s)
            except KeyError:
                pass
        return Geometry(level_names=names, main=names[-1], sram_per_sm_bytes=sram, register_per_sm_bytes=reg_bytes,
                        l2_bytes=0.0 if l2 is None else l2.capacity_bytes, sm_count=hw.sm_count,
                        gemm_block_m=fields.gemm_block_m if tiles else (),
                        gemm_block_n=fields.gemm_block_n if tiles else (),
                        gemm_max_tile_elements=fields.gemm_max_tile_elements if tiles else 0,
                        gemm_multicast=fields.gemm_multicast if fields is not None else 1,
                        matrix_dtypes=matrix_dtypes)
