"""Ragged id sequences as one padded batch plus per-row lengths (what the layers' and models'
``lengths`` arguments take)."""
import numpy as np


def pad_sequences(seqs, pad_value=0, dtype=np.int64):
    """Sequences of ids (each a list or 1-D array, possibly empty) -> ``(ids (N, T), lengths
    (N,))`` with T the longest length (0 for no sequences), row n holding ``seqs[n]`` followed
    by ``pad_value``. Rows keep the order given: nothing is sorted."""
    rows = [np.asarray(s) for s in seqs]
    for n, r in enumerate(rows):
        if r.ndim != 1:
            raise ValueError(f"pad_sequences: sequence {n} must be 1-D, got shape {r.shape}")
        if r.size and r.dtype.kind not in "iu":
            raise TypeError(f"pad_sequences: sequence {n} must hold integers, got dtype "
                            f"{r.dtype}")
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    T = int(lengths.max()) if rows else 0
    ids = np.full((len(rows), T), pad_value, dtype=dtype)
    if lengths.sum():
        ids[np.arange(T)[None, :] < lengths[:, None]] = np.concatenate([r for r in rows if r.size])
    return ids, lengths
