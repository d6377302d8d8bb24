"""The Numba CPU backend ("numba"): fused kernels with the reference's names and signatures.

Every op is wrapped by ``checks.checked`` exactly like ``fastrnn.reference``: validation and
C-contiguity happen there, once, for every backend. The first call of each op compiles (or
loads Numba's on-disk cache).

Threads: the embedding, softmax and dropout ops run ``prange`` loops on Numba's OpenMP pool,
between which OpenBLAS runs the layers' matrix products on its own threads. OpenMP workers spin
after each parallel region by default and steal the cores OpenBLAS needs: measured on the 2-core
dev machine, an affine + softmax + affine-backward step at PTB shapes (700 x 100 @ 100 x 10000)
took 64 ms with the default wait policy and 34 ms with ``OMP_WAIT_POLICY=PASSIVE`` (87 vs 67 ms
with another process busy). So the passive policy is the default here, unless the user set
one; it must be in the environment before the OpenMP runtime starts (first parallel call).
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ..checks import checked  # noqa: E402
from . import cells as _cells  # noqa: E402
from . import ops as _ops  # noqa: E402

rnn_forward = checked(_cells.rnn_forward)
rnn_backward = checked(_cells.rnn_backward)
lstm_forward = checked(_cells.lstm_forward)
lstm_backward = checked(_cells.lstm_backward)
gru_forward = checked(_cells.gru_forward)
gru_backward = checked(_cells.gru_backward)
gru_ra_forward = checked(_cells.gru_ra_forward)
gru_ra_backward = checked(_cells.gru_ra_backward)
embedding_forward = checked(_ops.embedding_forward)
embedding_backward = checked(_ops.embedding_backward)
softmax_cross_entropy = checked(_ops.softmax_cross_entropy)
dropout_forward = checked(_ops.dropout_forward)
