"""Photonic tensor-core power and precision derived from device fields, as the Lightening-Transformer (DOTA)
authors' simulator derives them (Zhu et al., HPCA 2024, arXiv 2305.19533; github.com/zhuhanqing/Lightening-Transformer
``hardware_simulator/hardware/photonic_crossbar.py`` and ``entry_area_power_profile.py``, "LT" below).

- Laser: the optical power each detector needs (its sensitivity) raised by the path's insertion loss and the
  1:(rows x cols) split, times 2^bits levels to resolve, over the wall-plug efficiency, per core (LT
  ``cal_laser_power``, after CrossLight, DAC 2021).
- Converters and modulators with DOTA's sharing: the row operands are modulated per core, the column operands once
  per core slot and shared by every tile (``input_mod_sharing_flag``); the cores of a tile sum in the optical domain
  and share one ADC and TIA array (``adc_share_flag``); every dot-product output has two photodetectors.
- Always-on power (laser, router tuning, detector and TIA bias) burns whatever the load; DAC, ADC and modulator
  energy is paid per cycle the array runs (LT's power at the array's rate, over that rate).
- Precision: one pass resolves ``native_bits``; a wider operand is bit-sliced into native slices and every pair of
  slices is one pass (time and converter energy x passes); the analog result carries min(native bits, ADC ENOB).
- Reprogramming: a weight-stationary engine (thermally tuned rings, an MZI mesh) holds one column operand per core,
  ``cols x wavelengths`` weights, and settles for ``reprogram_time`` each time it loads the next ones; an op's
  weights take ceil(weights / held) loads, serial with its MACs. DOTA modulates both operands every cycle and holds
  none (``weight_stationary: false``).
- Throughput: LT times an [n1 x d] x [d x n2] product as ceil(ceil(d / wavelengths) x ceil(n1 / rows) x
  ceil(n2 / cols) / cores) cycles, one crossbar tile per core and cycle, with no stall term (its memory "carefully
  designed to avoid being memory-bounded", ``simulator_FFN.py`` ``get_latency_crossbar``): on whole tiles the
  array runs at its peak, the achievable fraction of the authors' model is 1, and the rest is tile quantisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

FLOP_PER_MAC = 2
MILLIWATT_PER_DBM_0 = 1e-3      # 0 dBm is 1 mW (definition of the dBm)
DETECTORS_PER_OUTPUT = 2        # balanced detection: LT ``cal_RX_energy`` "two detector + TIA"


def db_ratio(db: float) -> float:
    """A power ratio from decibels."""
    return 10.0 ** (db / 10.0)


def dbm_to_w(dbm: float) -> float:
    """Watts from dBm."""
    return MILLIWATT_PER_DBM_0 * db_ratio(dbm)


@dataclass(frozen=True, kw_only=True)
class Array:
    """The MAC array: a rows x cols crossbar of dot-product units summing ``wavelengths`` products per cycle, in
    ``tiles`` tiles of ``cores_per_tile`` cores, at ``rate_hz`` cycles per second."""

    rows: int
    cols: int
    wavelengths: int
    tiles: int
    cores_per_tile: int
    rate_hz: float

    @property
    def cores(self) -> int:
        return self.tiles * self.cores_per_tile

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols * self.wavelengths * self.cores

    @property
    def peak_flop_per_s(self) -> float:
        return FLOP_PER_MAC * self.macs_per_cycle * self.rate_hz


@dataclass(frozen=True, kw_only=True)
class Optics:
    """Insertion losses (dB) along the most lossless path and the devices whose power sets the link budget."""

    modulator_loss_db: float
    router_loss_db: float
    routers_per_modulator: int
    y_branch_loss_db: float
    phase_shifter_loss_db: float
    coupler_loss_db: float
    detector_sensitivity_dbm: float
    laser_wall_plug_efficiency: float


def path_loss_db(array: Array, optics: Optics) -> float:
    """Modulation (modulator, WDM mux/demux routers, a log2 tree of Y-branches to the larger crossbar side) plus
    computation (one Y-branch, one phase shifter, one directional coupler per dot-product unit); LT
    ``cal_insertion_loss``."""
    modulation = (optics.modulator_loss_db + optics.routers_per_modulator * optics.router_loss_db
                  + optics.y_branch_loss_db * math.ceil(math.log2(max(array.rows, array.cols))))
    computation = optics.y_branch_loss_db + optics.phase_shifter_loss_db + optics.coupler_loss_db
    return modulation + computation


def laser_power_w(array: Array, optics: Optics, bits: int) -> float:
    """Electrical laser power of the whole array: per core, the detector sensitivity + path loss + the
    10 log10(rows x cols) split, in watts, x 2^bits levels, over the wall-plug efficiency (LT ``cal_laser_power``)."""
    budget_dbm = (optics.detector_sensitivity_dbm + path_loss_db(array, optics)
                  + 10.0 * math.log10(array.rows * array.cols))
    per_core = dbm_to_w(budget_dbm) * 2 ** bits / optics.laser_wall_plug_efficiency
    return per_core * array.cores


def modulators(array: Array, input_sharing: bool) -> int:
    """Modulators (one DAC each) of the array: the row operand of every core, and the column operand of every core
    slot, shared by the tiles when ``input_sharing`` (LT ``predict_power_crossbar``)."""
    rows = array.rows * array.wavelengths * array.cores
    col_copies = array.cores_per_tile * (1 if input_sharing else array.tiles)
    return rows + array.cols * array.wavelengths * col_copies


def adcs(array: Array, adc_sharing: bool) -> int:
    """ADCs (and TIAs): one per dot-product output of a tile when the tile's cores share them, else per core."""
    return array.rows * array.cols * (array.tiles if adc_sharing else array.cores)


def detectors(array: Array) -> int:
    """Photodetectors: two per dot-product output of every core (balanced detection)."""
    return DETECTORS_PER_OUTPUT * array.rows * array.cols * array.cores


@dataclass(frozen=True, kw_only=True)
class Devices:
    """Per-device energies and powers (SI)."""

    dac_energy_j: float                 # per conversion
    adc_energy_j: float                 # per conversion
    modulator_energy_j_per_bit: float   # one symbol per cycle (LT: energy_per_bit x rate, width-independent)
    modulator_static_w: float
    router_static_w: float              # per WDM router ring (thermal tuning)
    detector_w: float
    tia_w: float


@dataclass(frozen=True, kw_only=True)
class PowerBreakdown:
    """The array's power at its full rate, split into what burns whatever the load and what scales with use."""

    laser_w: float
    tuning_w: float     # modulator static + router rings
    detector_w: float
    tia_w: float
    dac_w: float
    adc_w: float
    modulator_w: float  # dynamic

    @property
    def always_on_w(self) -> float:
        return self.laser_w + self.tuning_w + self.detector_w + self.tia_w

    @property
    def dynamic_w(self) -> float:
        return self.dac_w + self.adc_w + self.modulator_w

    @property
    def total_w(self) -> float:
        return self.always_on_w + self.dynamic_w


def power_breakdown(array: Array, optics: Optics, devices: Devices, *, bits: int, input_sharing: bool,
                    adc_sharing: bool) -> PowerBreakdown:
    """The array's power at its full rate (module docstring)."""
    mods, converters = modulators(array, input_sharing), adcs(array, adc_sharing)
    return PowerBreakdown(
        laser_w=laser_power_w(array, optics, bits),
        tuning_w=mods * (devices.modulator_static_w + optics.routers_per_modulator * devices.router_static_w),
        detector_w=detectors(array) * devices.detector_w,
        tia_w=converters * devices.tia_w,
        dac_w=mods * devices.dac_energy_j * array.rate_hz,
        adc_w=converters * devices.adc_energy_j * array.rate_hz,
        modulator_w=mods * devices.modulator_energy_j_per_bit * array.rate_hz)


def passes(operand_bits: int, native_bits: int) -> int:
    """Passes of a bit-sliced product: each operand cut into ceil(bits / native) slices, every slice pair one pass."""
    slices = math.ceil(operand_bits / native_bits)
    return slices * slices


def effective_bits(native_bits: float, adc_enob: float) -> float:
    """Bits an analog result carries: the converters' resolution, but no more than the ADC's effective bits."""
    return min(native_bits, adc_enob)


def weights_held(array: Array) -> int:
    """Weights a weight-stationary array holds at once: one column operand (``cols x wavelengths``) per core."""
    return array.cols * array.wavelengths * array.cores


def reprogram_s(weight_elements: float, array: Array, reprogram_time_s: float) -> float:
    """Time to load ``weight_elements`` weights into a weight-stationary array: ceil(weights / held) loads of
    ``reprogram_time_s`` each; 0 without weights."""
    if weight_elements <= 0 or reprogram_time_s <= 0:
        return 0.0
    return math.ceil(weight_elements / weights_held(array)) * reprogram_time_s


def crossbar_cycles(n1: int, d: int, n2: int, array: Array) -> int:
    """Cycles LT gives an ``[n1 x d] x [d x n2]`` product on the array (LT ``get_latency_crossbar``): one
    ``rows x wavelengths`` by ``wavelengths x cols`` tile per core and cycle, the tiles shared over the cores."""
    tiles = math.ceil(d / array.wavelengths) * math.ceil(n1 / array.rows) * math.ceil(n2 / array.cols)
    return math.ceil(tiles / array.cores)


def crossbar_utilisation(n1: int, d: int, n2: int, array: Array) -> float:
    """The product's MACs over the MACs the array could do in LT's cycles: 1 on whole tiles, less on partial ones
    (a one-token GEMV fills 1 of ``rows`` rows)."""
    return n1 * d * n2 / (crossbar_cycles(n1, d, n2, array) * array.macs_per_cycle)
