"""The ramp-and-bandwidth line fit of calibration (archsim/fidelity/calibrate.py)."""
from __future__ import annotations

import pytest

from archsim.errors import ConfigError
from archsim.fidelity.calibrate import fit_ramp_and_bandwidth


def test_fit_recovers_a_line_and_rejects_degenerate_samples() -> None:
    bw, ramp = 2.5e12, 3e-6
    sizes = [1e6, 1e7, 5e7, 2e8]
    bw_fit, ramp_fit = fit_ramp_and_bandwidth(sizes, [ramp + s / bw for s in sizes])
    assert bw_fit == pytest.approx(bw) and ramp_fit == pytest.approx(ramp)
    with pytest.raises(ConfigError):
        fit_ramp_and_bandwidth([1e6, 1e6], [1.0, 2.0])   # one size: no slope
    with pytest.raises(ConfigError):
        fit_ramp_and_bandwidth([1e6, 2e6], [2.0, 1.0])   # time falling with bytes
