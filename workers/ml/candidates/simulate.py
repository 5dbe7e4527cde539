"""Numpy models of ONNX Runtime's int8 arithmetic, to choose each layer's smoothing cheaply.

Weights: symmetric int8 per output channel (what ``quantize_dynamic(per_channel=True)`` stores).
Activations: asymmetric uint8 with one range per tensor (``DynamicQuantizeLinear``).
"""

from __future__ import annotations

import numpy as np

SMOOTHING_ALPHAS = (0.0, 0.5, 0.75)


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output column of a (in, out) matrix: (int8 values, scales)."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale[scale == 0] = 1.0
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


def per_tensor(x: np.ndarray) -> np.ndarray:
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255.0 or 1.0
    zero = np.round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def smoothing_scales(x: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """Per input channel divisors for activations (and multipliers for weight rows).

    SmoothQuant: s_j = max|x_j|^alpha / max|w_j|^(1-alpha) moves activation outliers into the
    weights, which are quantized per output channel and absorb them better.
    """
    if alpha == 0.0:
        return np.ones(w.shape[0])
    x_max = np.maximum(np.abs(x).max(axis=0), 1e-5)
    w_max = np.maximum(np.abs(w).max(axis=1), 1e-5)
    return np.clip(x_max**alpha / w_max ** (1 - alpha), 1e-2, 1e2)


def relative_error(x: np.ndarray, w: np.ndarray, alpha: float) -> float:
    """||XW - Q(X/s) Q(sW)|| / ||XW|| for smoothing strength alpha."""
    exact = x @ w
    s = smoothing_scales(x, w, alpha)
    xs, ws = x / s, w * s[:, None]
    values, scale = quantize_weight(ws)
    approx = per_tensor(xs) @ (values.astype(ws.dtype) * scale)
    return float(np.linalg.norm(exact - approx) / max(float(np.linalg.norm(exact)), 1e-12))


def best_smoothing(x: np.ndarray, w: np.ndarray, alphas: tuple[float, ...] = SMOOTHING_ALPHAS) -> tuple[float, float]:
    """The (alpha, simulated error) with the lowest error on the captured activations."""
    error, alpha = min((relative_error(x, w, a), a) for a in alphas)
    return alpha, error
