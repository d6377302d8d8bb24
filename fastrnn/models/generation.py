"""Sampling from a vector of scores: temperature, top-k, forbidden ids, seeded generator."""
import numpy as np


def make_rng(seed=None, rng=None):
    if rng is not None:
        return rng
    return np.random.default_rng(seed)


def sample_id(scores, rng, temperature=1.0, top_k=None, skip_ids=None):
    """Draw one id from softmax(scores / temperature) restricted to the ``top_k`` best ids and
    never one of ``skip_ids``. ``temperature=0`` is greedy (argmax)."""
    s = np.asarray(scores, dtype=np.float64).ravel().copy()
    if skip_ids is not None and len(skip_ids):
        s[np.asarray(list(skip_ids), dtype=np.int64)] = -np.inf
    if top_k is not None and 0 < top_k < s.size:
        kth = np.partition(s, -top_k)[-top_k]
        s[s < kth] = -np.inf
    if not np.isfinite(s).any():
        raise ValueError("every id is excluded (skip_ids / top_k leave nothing to sample)")
    if temperature is None or temperature <= 0:
        return int(np.argmax(s))
    s = s / temperature
    s -= s[np.isfinite(s)].max()
    p = np.exp(s)
    p /= p.sum()
    return int(rng.choice(s.size, p=p))
