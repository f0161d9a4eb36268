"""Reduced-precision numerics: rounding, emulation, gating, targets, probes, metrics."""
