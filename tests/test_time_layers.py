"""fastrnn.time_layers: the textbook's common/time_layers.py names, with its semantics."""
import subprocess
import sys

import numpy as np
import pytest

import fastrnn.time_layers as TL
from test_layers import numerical_grad as _num_grad

# Every public name `from common.time_layers import *` gives in the textbook (its module has
# no __all__: np and GPU from common.np, what common.layers and common.functions export).
TEXTBOOK_NAMES = {
    "np", "GPU", "softmax", "sigmoid", "cross_entropy_error",
    "MatMul", "Affine", "Softmax", "SoftmaxWithLoss", "Sigmoid", "SigmoidWithLoss", "Dropout",
    "Embedding", "RNN", "TimeRNN", "LSTM", "TimeLSTM", "GRU", "TimeGRU", "TimeEmbedding",
    "TimeAffine", "TimeSoftmaxWithLoss", "TimeDropout", "TimeBiLSTM", "TimeSigmoidWithLoss",
    "Simple_TimeSoftmaxWithLoss", "Simple_TimeAffine",
}


def test_star_import_gives_every_textbook_name():
    ns = {}
    exec("from fastrnn.time_layers import *", ns)
    assert TEXTBOOK_NAMES <= set(ns)
    assert ns["np"] is np and ns["GPU"] is False


def _check_layer(layer, x, extra=()):
    """Gradients of sum(out * w) against central differences, for x and every param."""
    rng = np.random.default_rng(1)
    out = layer.forward(x, *extra)
    w = rng.standard_normal(np.shape(out))

    def f():
        return float(np.sum(layer.forward(x, *extra) * w))
    layer.forward(x, *extra)
    dx = layer.backward(w)
    if x.dtype.kind == "f":
        np.testing.assert_allclose(dx, _num_grad(f, x), rtol=1e-5, atol=1e-8)
    for p, g in zip(layer.params, [g.copy() for g in layer.grads]):
        np.testing.assert_allclose(g, _num_grad(f, p), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", [
    lambda r: (TL.MatMul(r.standard_normal((4, 3))), r.standard_normal((5, 4))),
    lambda r: (TL.Affine(r.standard_normal((4, 3)), r.standard_normal(3)),
               r.standard_normal((5, 4))),
    lambda r: (TL.Softmax(), r.standard_normal((5, 4))),
    lambda r: (TL.Sigmoid(), r.standard_normal((5, 4))),
    lambda r: (TL.Embedding(r.standard_normal((6, 3))), np.array([1, 4, 1, 0])),
], ids=["MatMul", "Affine", "Softmax", "Sigmoid", "Embedding"])
def test_non_time_layers_gradients(make):
    layer, x = make(np.random.default_rng(0))
    _check_layer(layer, x)


def test_losses_match_their_definitions():
    r = np.random.default_rng(2)
    x, t = r.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    sm = TL.SoftmaxWithLoss()
    loss = sm.forward(x, t)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), t] + 1e-7)))
    assert sm.forward(x, np.eye(4)[t]) == pytest.approx(loss)  # one-hot labels
    np.testing.assert_allclose(sm.backward(), _num_grad(lambda: sm.forward(x, t), x), atol=1e-6)
    sg = TL.SigmoidWithLoss()
    z, y = r.standard_normal(6), np.array([0, 1, 1, 0, 1, 0])
    s = 1 / (1 + np.exp(-z))
    want = -np.mean(np.log(np.where(y == 1, s, 1 - s) + 1e-7))
    assert sg.forward(z, y) == pytest.approx(want)
    np.testing.assert_allclose(sg.backward(), _num_grad(lambda: sg.forward(z, y), z), atol=1e-6)
    assert TL.cross_entropy_error(p[0], np.array(t[0])) == pytest.approx(-np.log(p[0, 0] + 1e-7))


def test_textbook_dropout_is_not_inverted():
    np.random.seed(0)
    d = TL.Dropout(0.25)
    x = np.ones((200, 50))
    y = d.forward(x)
    assert set(np.unique(y)) == {0.0, 1.0} and abs(y.mean() - 0.75) < 0.02
    np.testing.assert_array_equal(d.backward(x), y)
    np.testing.assert_array_equal(d.forward(x, train_flg=False), x * 0.75)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_single_step_cells_chained_equal_the_fused_time_layer(cell):
    r = np.random.default_rng(3)
    N, T, D, H = 3, 4, 5, 6
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    Wx, Wh = r.standard_normal((D, G * H)) * 0.5, r.standard_normal((H, G * H)) * 0.5
    b = np.zeros(G * H) if cell == "gru" else r.standard_normal(G * H) * 0.1
    xs, dhs = r.standard_normal((N, T, D)), r.standard_normal((N, T, H))
    fused = {"rnn": TL.TimeRNN, "lstm": TL.TimeLSTM}[cell](Wx, Wh, b) if cell != "gru" \
        else TL.TimeGRU(Wx, Wh)  # the textbook's bias-free signature
    hs = fused.forward(xs)
    dxs = fused.backward(dhs)
    h, c = np.zeros((N, H)), np.zeros((N, H))
    steps = []
    for t in range(T):
        step = {"rnn": lambda: TL.RNN(Wx, Wh, b), "lstm": lambda: TL.LSTM(Wx, Wh, b),
                "gru": lambda: TL.GRU(Wx, Wh)}[cell]()
        if cell == "lstm":
            h, c = step.forward(xs[:, t], h, c)
        else:
            h = step.forward(xs[:, t], h)
        np.testing.assert_allclose(h, hs[:, t], rtol=1e-10, atol=1e-12)
        steps.append(step)
    dh, dc = np.zeros((N, H)), np.zeros((N, H))
    dWx, dWh = 0, 0
    for t in reversed(range(T)):
        if cell == "lstm":
            dx, dh, dc = steps[t].backward(dhs[:, t] + dh, dc)
        else:
            dx, dh = steps[t].backward(dhs[:, t] + dh)
        np.testing.assert_allclose(dx, dxs[:, t], rtol=1e-9, atol=1e-11)
        gx, gh = (steps[t].dWx, steps[t].dWh) if cell == "gru" else steps[t].grads[:2]
        dWx, dWh = dWx + gx, dWh + gh
    np.testing.assert_allclose(dWx, fused.dWx if cell == "gru" else fused.grads[0], rtol=1e-9)
    np.testing.assert_allclose(dWh, fused.grads[1], rtol=1e-9)
    np.testing.assert_allclose(dh, fused.dh, rtol=1e-9, atol=1e-11)


def test_simple_variants_keep_the_textbook_attributes():
    r = np.random.default_rng(4)
    aff = TL.Simple_TimeAffine(r.standard_normal((3, 2)), np.zeros(2))
    aff.backward(np.ones((1, 4, 2)) + 0 * aff.forward(r.standard_normal((1, 4, 3))))
    assert aff.W is aff.params[0] and aff.db.tolist() == [4.0, 4.0]
    xs, ts = r.standard_normal((2, 3, 5)), r.integers(0, 5, (2, 3))
    per_step = np.mean([TL.SoftmaxWithLoss().forward(xs[:, t], ts[:, t]) for t in range(3)])
    assert TL.Simple_TimeSoftmaxWithLoss().forward(xs, ts) == pytest.approx(per_step, abs=1e-6)


TEXTBOOK_SCRIPT = '''
import sys
from fastrnn.time_layers import *


class SimpleRnnlm:  # as written in the textbook's ch05, only the import line differs
    def __init__(self, vocab_size, wordvec_size, hidden_size):
        V, D, H = vocab_size, wordvec_size, hidden_size
        rn = np.random.randn
        embed_W = (rn(V, D) / 100).astype('f')
        rnn_Wx = (rn(D, 4 * H) / np.sqrt(D)).astype('f')
        rnn_Wh = (rn(H, 4 * H) / np.sqrt(H)).astype('f')
        rnn_b = np.zeros(4 * H).astype('f')
        affine_W = (rn(H, V) / np.sqrt(H)).astype('f')
        affine_b = np.zeros(V).astype('f')
        self.layers = [TimeEmbedding(embed_W), TimeLSTM(rnn_Wx, rnn_Wh, rnn_b, stateful=True),
                       TimeAffine(affine_W, affine_b)]
        self.loss_layer = TimeSoftmaxWithLoss()
        self.params, self.grads = [], []
        for layer in self.layers:
            self.params += layer.params
            self.grads += layer.grads

    def forward(self, xs, ts):
        for layer in self.layers:
            xs = layer.forward(xs)
        return self.loss_layer.forward(xs, ts)

    def backward(self, dout=1):
        dout = self.loss_layer.backward(dout)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout


np.random.seed(0)
corpus = np.array([0, 1, 2, 3, 4, 1, 2, 3] * 20)
model = SimpleRnnlm(5, 8, 16)
xs, ts = corpus[:-1][:150].reshape(5, 30), corpus[1:][:150].reshape(5, 30)
losses = []
for it in range(60):
    loss = model.forward(xs, ts)
    model.backward()
    for p, g in zip(model.params, model.grads):
        p -= 0.5 * g
    losses.append(float(loss))
head = Affine(np.random.randn(16, 2).astype('f'), np.zeros(2, 'f'))
y = SigmoidWithLoss().forward(head.forward(np.ones((3, 16), 'f'))[:, 0], np.array([0, 1, 1]))
print(losses[0], losses[-1], float(y))
sys.exit(0 if losses[-1] < 0.5 * losses[0] else 1)
'''


def test_a_textbook_script_runs_after_the_one_line_swap(tmp_path):
    script = tmp_path / "textbook_style.py"
    script.write_text(TEXTBOOK_SCRIPT)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout
