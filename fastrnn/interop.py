"""Weights between fastrnn layers and ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (torch optional).

Layout differences handled here:

* PyTorch stores ``weight_ih`` (G*H, D) and ``weight_hh`` (G*H, H) and computes ``x W^T``;
  fastrnn stores ``Wx`` (D, G*H), ``Wh`` (H, G*H) and computes ``x @ Wx``: a transpose.
* Gate order: PyTorch LSTM ``[i | f | g | o]`` vs fastrnn ``[f | g | i | o]``; PyTorch GRU
  ``[r | z | n]`` vs fastrnn ``[z | r | n]``.
* PyTorch has two biases, ``bias_ih`` and ``bias_hh``. For RNN and LSTM (and the GRU's z and r
  gates) only their sum matters: fastrnn's ``b`` is the sum, and export puts ``b`` in
  ``bias_ih`` and zeros in ``bias_hh``. The GRU's candidate keeps its recurrent bias apart
  (``r * (h W_hn + b_hn)``), which is fastrnn's ``b_hn``: PyTorch's GRU is fastrnn's
  ``TimeGRU(reset_after=True)``. A reset-before GRU has no PyTorch equivalent: exporting one is a
  ``ValueError``.

The pure-NumPy converters (``torch_to_fastrnn`` / ``fastrnn_to_torch``) need no torch; the
module-level helpers import torch inside the function.
"""
import numpy as np

from . import layers as L
from .checks import array_module

# fastrnn gate block k comes from PyTorch gate block _ORDER[kind][k]
_ORDER = {"rnn": [0], "lstm": [1, 2, 0, 3], "gru": [1, 0, 2]}
from .contract import GATES as _GATES
_KINDS = {"RNN": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _blocks(a, order, H, axis):
    return np.concatenate([np.take(a, np.arange(k * H, (k + 1) * H), axis=axis) for k in order],
                          axis=axis)


def _inverse(order):
    inv = [0] * len(order)
    for k, j in enumerate(order):
        inv[j] = k
    return inv


def torch_to_fastrnn(kind, w_ih, w_hh, b_ih=None, b_hh=None):
    """PyTorch weights (NumPy arrays) -> dict(Wx, Wh, b[, b_hn]) in fastrnn layout."""
    if kind not in _ORDER:
        raise ValueError(f"unknown kind {kind!r}; expected rnn, lstm or gru")
    w_ih, w_hh = np.asarray(w_ih), np.asarray(w_hh)
    G = _GATES[kind]
    H = w_hh.shape[1]
    if w_hh.shape != (G * H, H) or w_ih.ndim != 2 or w_ih.shape[0] != G * H:
        raise ValueError(f"{kind}: expected weight_ih ({G}*H, D) and weight_hh ({G}*H, H), got "
                         f"{w_ih.shape} and {w_hh.shape}")
    b_ih = np.zeros(G * H, w_ih.dtype) if b_ih is None else np.asarray(b_ih)
    b_hh = np.zeros(G * H, w_ih.dtype) if b_hh is None else np.asarray(b_hh)
    order = _ORDER[kind]
    out = {"Wx": _blocks(w_ih.T, order, H, 1), "Wh": _blocks(w_hh.T, order, H, 1)}
    if kind == "gru":
        b = _blocks(b_ih, order, H, 0).copy()
        bh = _blocks(b_hh, order, H, 0)
        b[:2 * H] += bh[:2 * H]
        out["b"], out["b_hn"] = b, bh[2 * H:].copy()
    else:
        out["b"] = _blocks(b_ih + b_hh, order, H, 0)
    return out


def fastrnn_to_torch(kind, Wx, Wh, b, b_hn=None):
    """fastrnn weights (NumPy) -> dict(weight_ih, weight_hh, bias_ih, bias_hh) for PyTorch."""
    if kind not in _ORDER:
        raise ValueError(f"unknown kind {kind!r}; expected rnn, lstm or gru")
    Wx, Wh, b = np.asarray(Wx), np.asarray(Wh), np.asarray(b)
    H = Wh.shape[0]
    inv = _inverse(_ORDER[kind])
    out = {"weight_ih": _blocks(Wx, inv, H, 1).T.copy(), "weight_hh": _blocks(Wh, inv, H, 1).T.copy(),
           "bias_ih": _blocks(b, inv, H, 0)}
    bias_hh = np.zeros_like(b)
    if kind == "gru":
        if b_hn is None:
            raise ValueError("a PyTorch GRU needs b_hn (fastrnn TimeGRU with reset_after=True)")
        bias_hh[2 * H:] = b_hn  # PyTorch's n block is its last block too
    out["bias_hh"] = bias_hh
    return out


def _kind_of_module(module):
    kind = _KINDS.get(type(module).__name__)
    if kind is None:
        raise TypeError(f"expected torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    if kind == "rnn" and getattr(module, "nonlinearity", "tanh") != "tanh":
        raise ValueError("fastrnn's TimeRNN is tanh only; this nn.RNN uses "
                         f"nonlinearity={module.nonlinearity!r}")
    if kind == "lstm" and getattr(module, "proj_size", 0):
        raise ValueError("LSTM with proj_size > 0 has no fastrnn equivalent")
    return kind


def _kind_of_layer(layer):
    if isinstance(layer, L.TimeLSTM):
        return "lstm"
    if isinstance(layer, L.TimeGRU):
        if not layer.reset_after:
            raise ValueError("PyTorch's GRU is the reset-after form; this TimeGRU has "
                             "reset_after=False, which PyTorch cannot represent (train with "
                             "TimeGRU(..., reset_after=True) to export)")
        return "gru"
    if isinstance(layer, L.TimeRNN):
        return "rnn"
    raise TypeError(f"expected a TimeRNN, TimeLSTM or TimeGRU, got {type(layer).__name__}")


def _np(t):
    return t.detach().cpu().numpy()


def _suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction else "")


def weights_from_torch(module, layer=0, direction=0):
    """fastrnn-layout weights (NumPy, the module's dtype) of one layer/direction of a module."""
    kind = _kind_of_module(module)
    if not 0 <= layer < module.num_layers:
        raise ValueError(f"layer {layer} out of range: the module has {module.num_layers}")
    if direction and not module.bidirectional:
        raise ValueError("direction=1 needs a bidirectional module")
    s = _suffix(layer, direction)
    get = lambda n: getattr(module, n + s, None)  # noqa: E731
    b_ih, b_hh = get("bias_ih"), get("bias_hh")
    return kind, torch_to_fastrnn(kind, _np(get("weight_ih")), _np(get("weight_hh")),
                                  None if b_ih is None else _np(b_ih),
                                  None if b_hh is None else _np(b_hh))


def from_torch(module, layer=0, direction=0, stateful=False, dtype=None, xp=None):
    """A fastrnn TimeRNN / TimeLSTM / TimeGRU(reset_after=True) with the weights of one layer
    (and direction) of a ``torch.nn.RNN/LSTM/GRU``. ``xp``: numpy (default) or cupy."""
    kind, w = weights_from_torch(module, layer, direction)
    xp = np if xp is None else xp
    w = {k: xp.asarray(v.astype(dtype or v.dtype)) for k, v in w.items()}
    if kind == "lstm":
        return L.TimeLSTM(w["Wx"], w["Wh"], w["b"], stateful=stateful)
    if kind == "gru":
        return L.TimeGRU(w["Wx"], w["Wh"], w["b"], stateful=stateful, reset_after=True,
                         b_hn=w["b_hn"])
    return L.TimeRNN(w["Wx"], w["Wh"], w["b"], stateful=stateful)


def layers_from_torch(module, stateful=False, dtype=None, xp=None):
    """Every layer of a (multi-layer, possibly bidirectional) module, in order: a list of
    fastrnn layers (TimeBidirectional for bidirectional ones) to apply one after another."""
    out = []
    for k in range(module.num_layers):
        fwd = from_torch(module, k, 0, stateful, dtype, xp)
        if module.bidirectional:
            out.append(L.TimeBidirectional(fwd, from_torch(module, k, 1, stateful, dtype, xp)))
        else:
            out.append(fwd)
    return out


def to_torch(layer, module=None, layer_index=0, direction=0):
    """Copy a fastrnn recurrent layer's weights into ``module`` (one layer/direction of it), or
    into a new single-layer ``batch_first=True`` module of the matching type and dtype, which is
    returned."""
    import torch

    kind = _kind_of_layer(layer)
    Wx, Wh, b = (_host(p) for p in layer.params[:3])
    b_hn = _host(layer.params[3]) if kind == "gru" else None
    D, H = Wx.shape[0], Wh.shape[0]
    if module is None:
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
        dt = torch.float64 if Wx.dtype == np.float64 else torch.float32
        module = cls(D, H, batch_first=True, dtype=dt)
    elif _kind_of_module(module) != kind:
        raise TypeError(f"cannot copy a {type(layer).__name__} into a {type(module).__name__}")
    if module.hidden_size != H or (layer_index == 0 and module.input_size != D):
        raise ValueError(f"size mismatch: layer has D={D}, H={H}; module has "
                         f"input_size={module.input_size}, hidden_size={module.hidden_size}")
    w = fastrnn_to_torch(kind, Wx, Wh, b, b_hn)
    s = _suffix(layer_index, direction)
    with torch.no_grad():
        for name, value in w.items():
            p = getattr(module, name + s, None)
            if p is None:
                if np.any(value):
                    raise ValueError(f"the module has no {name + s} (bias=False) but the layer's "
                                     f"bias is not zero")
                continue
            p.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(p.dtype))
    return module


def _host(a):
    return a if isinstance(a, np.ndarray) else array_module(a).asnumpy(a)
