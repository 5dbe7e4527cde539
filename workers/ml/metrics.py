"""Plain numpy quality measures shared by evaluation, compression and benchmarks."""

from __future__ import annotations

import numpy as np

# Neighbour lists are computed among at most this many samples (the similarity matrix is N x N).
MAX_NEIGHBOUR_SAMPLES = 2000


def class_ids(outputs: np.ndarray) -> np.ndarray:
    """Predicted class per sample: argmax of scores (N, C), or the ids themselves (N,) integers."""
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(axis=1)
    if outputs.ndim == 1 and outputs.dtype.kind in "iu":
        return outputs
    raise ValueError(
        f"a classifier must output scores of shape (N, classes) or integer ids (N,); got "
        f"{outputs.dtype.name} {list(outputs.shape)}"
    )


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(class_ids(outputs) == labels.reshape(-1)))


def rmse(predictions: np.ndarray, targets: np.ndarray) -> float:
    diff = predictions.astype(np.float64) - targets.astype(np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.abs(predictions.astype(np.float64) - targets.astype(np.float64))))


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (rows flattened)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def nearest_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` most cosine-similar other rows, most similar first."""
    unit = embeddings.reshape(len(embeddings), -1).astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def topk_agreement(embeddings: np.ndarray, reference: np.ndarray, k: int = 5) -> float:
    """Mean share of each sample's ``k`` nearest neighbours that the reference also finds.

    Neighbours are searched among the first :data:`MAX_NEIGHBOUR_SAMPLES` samples.
    """
    count = min(len(embeddings), MAX_NEIGHBOUR_SAMPLES)
    if count <= k:
        raise ValueError(f"top-{k} agreement needs more than {k} samples, got {count}")
    mine = nearest_neighbours(embeddings[:count], k)
    theirs = nearest_neighbours(reference[:count], k)
    shared = [len(np.intersect1d(x, y)) for x, y in zip(mine, theirs, strict=True)]
    return float(np.mean(shared) / k)
