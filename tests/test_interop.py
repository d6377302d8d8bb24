"""PyTorch interop: layout mapping (no torch needed) and equality with torch autograd (float64)."""
import numpy as np
import pytest

from fastrnn import layers as L
from fastrnn.interop import fastrnn_to_torch, torch_to_fastrnn


@pytest.mark.parametrize("kind,G", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_layout_roundtrip_without_torch(kind, G):
    r = np.random.default_rng(0)
    D, H = 3, 5
    w_ih, w_hh = r.standard_normal((G * H, D)), r.standard_normal((G * H, H))
    b_ih, b_hh = r.standard_normal(G * H), r.standard_normal(G * H)
    f = torch_to_fastrnn(kind, w_ih, w_hh, b_ih, b_hh)
    assert f["Wx"].shape == (D, G * H) and f["Wh"].shape == (H, G * H)
    back = fastrnn_to_torch(kind, **f)
    np.testing.assert_array_equal(back["weight_ih"], w_ih)
    np.testing.assert_array_equal(back["weight_hh"], w_hh)
    # biases come back as (sum in bias_ih, the GRU's b_hn in bias_hh): same function
    if kind == "gru":
        np.testing.assert_allclose(back["bias_ih"][:2 * H], (b_ih + b_hh)[:2 * H])
        np.testing.assert_array_equal(back["bias_ih"][2 * H:], b_ih[2 * H:])
        np.testing.assert_array_equal(back["bias_hh"][2 * H:], b_hh[2 * H:])
    else:
        np.testing.assert_allclose(back["bias_ih"], b_ih + b_hh)
        assert not back["bias_hh"].any()


def test_lstm_gate_order():
    H = 2
    w = np.repeat(np.arange(4.0), H)[:, None] * np.ones((4 * H, 1))  # torch blocks i,f,g,o = 0..3
    f = torch_to_fastrnn("lstm", w, np.zeros((4 * H, H)))
    # fastrnn blocks f, g, i, o
    np.testing.assert_array_equal(f["Wx"][0], np.repeat([1.0, 2.0, 0.0, 3.0], H))
    g = torch_to_fastrnn("gru", w[:3 * H], np.zeros((3 * H, H)))  # torch r, z, n
    np.testing.assert_array_equal(g["Wx"][0], np.repeat([1.0, 0.0, 2.0], H))  # z, r, n


def test_shape_errors():
    with pytest.raises(ValueError, match="weight_ih"):
        torch_to_fastrnn("lstm", np.zeros((8, 3)), np.zeros((8, 3)))
    with pytest.raises(ValueError, match="unknown kind"):
        torch_to_fastrnn("qrnn", np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="b_hn"):
        fastrnn_to_torch("gru", np.zeros((2, 6)), np.zeros((2, 6)), np.zeros(6))


# ------------------------------------------------------------------------------- with torch
torch = pytest.importorskip("torch")
from fastrnn.interop import from_torch, layers_from_torch, to_torch  # noqa: E402

MODULES = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}


def _module(name, D, H, **kw):
    torch.manual_seed(0)
    m = MODULES[name](D, H, batch_first=True, dtype=torch.float64, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)
    return m


@pytest.mark.parametrize("name", list(MODULES))
def test_outputs_and_gradients_equal_torch_autograd(name):
    N, T, D, H = 3, 6, 4, 5
    m = _module(name, D, H)
    layer = from_torch(m)
    r = np.random.default_rng(1)
    x = torch.tensor(r.standard_normal((N, T, D)), requires_grad=True)
    h0 = torch.tensor(np.tanh(r.standard_normal((1, N, H))), requires_grad=True)
    c0 = torch.tensor(r.standard_normal((1, N, H)), requires_grad=True)
    y, _ = m(x, (h0, c0) if name == "LSTM" else h0)
    dy = torch.tensor(r.standard_normal((N, T, H)))
    (y * dy).sum().backward()

    if name == "LSTM":
        layer.set_state(h0[0].detach().numpy(), c0[0].detach().numpy())
    else:
        layer.set_state(h0[0].detach().numpy())
    yf = layer.forward(x.detach().numpy())
    dx = layer.backward(dy.numpy())
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(yf, y.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, x.grad.numpy(), **tol)
    np.testing.assert_allclose(layer.dh, h0.grad[0].numpy(), **tol)
    if name == "LSTM":
        np.testing.assert_allclose(layer.dc, c0.grad[0].numpy(), **tol)
    # weight gradients map like the weights; the bias gradient equals both torch bias grads
    kind = name.lower()
    g = torch_to_fastrnn(kind, m.weight_ih_l0.grad.numpy(), m.weight_hh_l0.grad.numpy(),
                         m.bias_ih_l0.grad.numpy(), None)
    np.testing.assert_allclose(layer.grads[0], g["Wx"], **tol)
    np.testing.assert_allclose(layer.grads[1], g["Wh"], **tol)
    np.testing.assert_allclose(layer.grads[2], g["b"], **tol)
    if name == "GRU":
        H_ = H
        np.testing.assert_allclose(layer.grads[3], m.bias_hh_l0.grad.numpy()[2 * H_:], **tol)


@pytest.mark.parametrize("name", list(MODULES))
def test_export_roundtrip(name):
    m = _module(name, 3, 4)
    layer = from_torch(m)
    m2 = to_torch(layer)
    assert type(m2) is type(m) and m2.batch_first
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    np.testing.assert_allclose(m2(x)[0].detach().numpy(), m(x)[0].detach().numpy(), rtol=1e-12)
    m3 = _module(name, 3, 4)
    to_torch(layer, m3)  # into an existing module
    np.testing.assert_allclose(m3(x)[0].detach().numpy(), m(x)[0].detach().numpy(), rtol=1e-12)


def test_multilayer_bidirectional_stack():
    m = _module("LSTM", 3, 4, num_layers=2, bidirectional=True)
    stack = layers_from_torch(m)
    assert len(stack) == 2 and isinstance(stack[0], L.TimeBidirectional)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out = x.numpy()
    for layer in stack:
        out = layer.forward(out)
    np.testing.assert_allclose(out, m(x)[0].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_float32_and_dtype_override():
    m = _module("GRU", 3, 4).float()
    assert from_torch(m).params[0].dtype == np.float32
    assert from_torch(m, dtype=np.float64).params[0].dtype == np.float64


def test_unsupported_forms_are_clear_errors():
    r = np.random.default_rng(0)
    gru = L.TimeGRU(r.standard_normal((3, 12)), r.standard_normal((4, 12)), np.zeros(12))
    with pytest.raises(ValueError, match="reset_after=False"):
        to_torch(gru)
    with pytest.raises(ValueError, match="tanh only"):
        from_torch(torch.nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match="expected torch.nn"):
        from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="cannot copy"):
        to_torch(from_torch(_module("LSTM", 3, 4)), _module("GRU", 3, 4))
    with pytest.raises(ValueError, match="size mismatch"):
        to_torch(from_torch(_module("LSTM", 3, 4)), _module("LSTM", 3, 5))
    with pytest.raises(ValueError, match="out of range"):
        from_torch(_module("LSTM", 3, 4), layer=1)
