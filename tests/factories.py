"""Test data: the demo's real digits model, and arrays packed as CI would send them."""

from releases.management.demo_model import DigitsModel, digits_eval_npz, digits_model, npz_bytes

__all__ = ["DigitsModel", "digits_eval_npz", "digits_model", "npz_bytes"]
