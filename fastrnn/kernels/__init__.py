"""The Numba CPU backend ("numba"): fused kernels with the reference's names and signatures.

Every op is wrapped by ``checks.checked`` exactly like ``fastrnn.reference``: validation and
C-contiguity happen there, once, for every backend. The first call of each op compiles (or
loads Numba's on-disk cache).
"""
from ..checks import checked
from . import cells as _cells
from . import ops as _ops

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
