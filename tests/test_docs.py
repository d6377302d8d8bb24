"""The API reference (docs/api, Sphinx autodoc) builds with warnings as errors."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install '.[docs]')")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                        os.path.join(ROOT, "docs", "api"), str(tmp_path / "html")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    for page in ("layers", "backend", "time_layers", "models", "train", "optim"):
        html = (tmp_path / "html" / f"{page}.html").read_text(encoding="utf-8")
        assert f'id="fastrnn.{page}' in html or f"fastrnn.{page}" in html, page
    train = (tmp_path / "html" / "train.html").read_text(encoding="utf-8")
    assert 'id="fastrnn.train.LMTrainer"' in train and 'id="fastrnn.train.StepDecay"' in train
