"""Models built only from ``fastrnn.layers``: RNN language models and encoder-decoders.

Every model has ``params`` / ``grads`` lists (tied weights appear once per layer using them;
the optimizers merge them), ``forward(xs, ts)`` -> loss, ``backward()``, ``reset_state()``,
``save_params`` / ``load_params``, and runs on NumPy or CuPy arrays (``xp="cupy"``).
"""
from .attention import AttentionDecoder, AttentionSeq2seq, TimeAttention
from .base import CheckpointError, Model, build_model, load_model
from .generation import sample_id
from .rnnlm import BetterRnnlm, GRUlm, Rnnlm, RnnLM, SimpleRnnlm
from .seq2seq import Decoder, Encoder, PeekyDecoder, PeekySeq2seq, Seq2seq

__all__ = ["CheckpointError", "Model", "build_model", "load_model", "sample_id", "RnnLM",
           "SimpleRnnlm", "Rnnlm", "BetterRnnlm", "GRUlm", "Seq2seq", "PeekySeq2seq",
           "AttentionSeq2seq", "Encoder", "Decoder", "PeekyDecoder", "AttentionDecoder",
           "TimeAttention"]
