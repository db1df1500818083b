"""Real-looking test vectors (clustered, like embeddings) and exact answers."""
import numpy as np


def clustered(n: int, dim: int, seed: int = 1, clusters: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    pick = rng.integers(0, clusters, n)
    return (centres[pick] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32)


def text(v) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def bits_text(v) -> str:
    return "".join("1" if x > 0 else "0" for x in v)


def distances(data: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    d64, q64 = data.astype(np.float64), q.astype(np.float64)
    if metric == "l2":
        return np.linalg.norm(d64 - q64, axis=1)
    if metric == "ip":
        return -(d64 @ q64)
    if metric == "cosine":
        return 1 - (d64 @ q64) / (np.linalg.norm(d64, axis=1) * np.linalg.norm(q64))
    if metric == "l1":
        return np.abs(d64 - q64).sum(axis=1)
    if metric == "hamming":
        return ((data > 0) != (q > 0)).sum(axis=1).astype(np.float64)
    raise ValueError(metric)


def recall_at_k(got_ids, data, q, metric, k=10) -> float:
    """Tie-aware recall: a returned row counts when its exact distance is
    within the k-th best exact distance (ties are common with Hamming)."""
    d = distances(data, q, metric)
    kth = np.sort(d)[k - 1]
    eps = 1e-6 * max(1.0, abs(kth))
    good = sum(1 for i in got_ids[:k] if d[i] <= kth + eps)
    return good / k


def embedding_like(n: int, dim: int, seed: int = 1, latent: int = 24, topics: int = 30) -> np.ndarray:
    """Unit vectors like sentence embeddings: a few dozen latent factors
    (topics plus spread) mapped into `dim` dimensions, a little noise. Unlike
    isotropic noise, near neighbours are clearly nearer than the rest."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(12345).standard_normal((latent, dim)).astype(np.float32)
    centres = rng.standard_normal((topics, latent)).astype(np.float32)
    z = centres[rng.integers(0, topics, n)] + 0.6 * rng.standard_normal((n, latent)).astype(np.float32)
    x = z @ basis + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
