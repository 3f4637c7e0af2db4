"""Fidelity: validation of the model against published measurements, and calibration of named
efficiency fields from microbenchmarks (docs/fidelity.md)."""
