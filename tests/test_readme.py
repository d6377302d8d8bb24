"""The README's code says what the code does: its snippets run as written."""
import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _section_code(title):
    """The first ```python block after the heading ``title``."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    start = text.index(title)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_textbook_swap_line_is_the_one_documented():
    code = _section_code("### Textbook compatibility")
    assert code.strip().startswith("from fastrnn.time_layers import *")
    assert "# was: from common.time_layers import *" in code
    ns = {}
    exec(code, ns)
    assert "TimeLSTM" in ns and ns["np"] is np


def test_training_api_snippet_builds_the_recipe(monkeypatch):
    import fastrnn.data
    from fastrnn.train import LMTrainer

    class Ptb:
        vocab = list(range(30))
        train = val = np.random.default_rng(0).integers(0, 30, 1000)
    monkeypatch.setattr(fastrnn.data, "load_ptb", lambda d: Ptb)
    seen = {}
    monkeypatch.setattr(LMTrainer, "fit", lambda self, n: seen.update(t=self, n=n))
    ns = {}
    exec(_section_code("### Training API"), ns)
    tr = seen["t"]
    assert seen["n"] == 13 and tr.optimizer.lr == 1.0 and tr.max_grad == 5.0
    assert tr.model.loss_layer.reduction == "sum_over_time"
    assert all(float(abs(p).max()) <= 0.1 for p in tr.model.params)


def test_interop_snippet_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ns = {}
    exec(_section_code("### Interop"), ns)
    want = ns["lstm"](torch.from_numpy(ns["xs"]))[0].detach().numpy()
    np.testing.assert_allclose(ns["hs"], want, rtol=1e-4, atol=1e-5)
    for a, b in zip(ns["lstm"].parameters(), ns["back"].parameters()):
        assert a.shape == b.shape
    got = ns["back"](torch.from_numpy(ns["xs"]))[0].detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
