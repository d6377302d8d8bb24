"""Set-up that cannot break: what a wheel ships, where Numba's cache goes, ``fastrnn bench`` from a
non-editable install, and the README's set-up commands in a fresh clone.
"""
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BENCH = ["--cells", "lstm", "--sizes", "2x3x4x5", "--columns", "reference,numba",
              "--modes", "fwdbwd", "--repeat", "1", "--rounds", "1", "--no-train", "--no-load",
              "--no-cold-start", "--quiet"]


def readme_commands():
    """The README's set-up commands: (main job, tests), each one shell line."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)\n```", f.read(), re.S)]
    main = [b for b in blocks if b.endswith("fastrnn train") and "pip install ." in b]
    tests = [b for b in blocks if "pytest" in b and "pip install -e" in b]
    assert len(main) == 1 and len(tests) == 1, blocks
    return main[0], tests[0]


def _clean_env(**extra):
    """The environment of a user's shell: no virtual environment, no PYTHONPATH, no cache dir."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NUMBA_CACHE_DIR", "PYTHONHOME")}
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p != venv_bin)
    env.update(extra)
    return env


def _run(cmd, **kw):
    kw.setdefault("timeout", 900)
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert readme_commands()[1] in ci.splitlines()


@pytest.mark.parametrize("case", ["xdg", "explicit", "unwritable"])
def test_numba_cache_lives_outside_the_package(tmp_path, case):
    env = _clean_env(PYTHONPATH=ROOT, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    want = str(tmp_path / "xdg" / "fastrnn" / "numba")
    if case == "explicit":
        env["NUMBA_CACHE_DIR"] = want = str(tmp_path / "mine")
    elif case == "unwritable":
        (tmp_path / "file").write_text("")
        env["XDG_CACHE_HOME"] = str(tmp_path / "file")  # a file: no folder can be made in it
    code = ("import sys, fastrnn\n"
            "assert not {'numba', 'cupy', 'torch'} & set(sys.modules), sys.modules.keys()\n"
            "import numba\nprint(numba.config.CACHE_DIR)")
    got = _run([sys.executable, "-c", code], env=env, cwd=tmp_path).strip()
    if case == "unwritable":
        assert got.endswith(os.path.join("", "numba")) and os.access(got, os.W_OK)
        assert "site-packages" not in got and not got.startswith(str(tmp_path / "file"))
    else:
        assert got == want


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    d = tmp_path_factory.mktemp("wheel")
    try:
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
              "-w", str(d), ROOT])
    except AssertionError:  # no setuptools here: let pip fetch the build requirements
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(d), ROOT])
    (path,) = d.glob("fastrnn-*.whl")
    return str(path)


def test_wheel_ships_the_library_and_its_benchmarks_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fastrnn"}, tops
    assert "fastrnn/bench/cells.py" in names and "fastrnn/cuda/recurrence.cu" in names


def test_bench_runs_from_an_installed_wheel(wheel, tmp_path):
    """A fresh venv with only the wheel installed (its dependencies seen through a .pth file of
    this environment's site-packages): ``fastrnn bench`` runs, including its child processes,
    and Numba writes nothing into the installed package."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = str(venv / "bin" / "python")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel])
    (purelib,) = (venv / "lib").glob("python*/site-packages")
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    where = _run([py, "-c", "import fastrnn; print(fastrnn.__file__)"], env=env, cwd=tmp_path)
    assert where.startswith(str(purelib)), where
    out = _run([str(venv / "bin" / "fastrnn"), "bench", "--"] + TINY_BENCH, env=env,
               cwd=tmp_path)
    assert "FLOP limit ms" in out and "WRONG" not in out
    leftovers = [os.path.join(d, f) for d, _, fs in os.walk(purelib / "fastrnn") for f in fs
                 if f.endswith((".nbi", ".nbc"))]
    assert not leftovers
    assert list((tmp_path / "cache" / "fastrnn" / "numba").rglob("*.nbi"))


@pytest.mark.slow
@pytest.mark.parametrize("order", ["main_first", "tests_first"])
def test_readme_commands_in_a_fresh_clone(tmp_path, order):
    """The README's two set-up commands one after the other in one clone, in either order, then
    ``fastrnn --help``. To bound the time, the main job trains on 3000 characters for one epoch
    and the test command runs this file's quick tests; everything else is verbatim."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", ROOT, str(clone)])
    main, tests = readme_commands()
    main = main.replace("fastrnn train", "fastrnn train --max-tokens 3000 --epochs 1 --quiet "
                                         "--no-plot --sample-length 0")
    tests = tests.replace('-m "not slow"', '-m "not slow" tests/test_install.py -k numba_cache')
    env = _clean_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    for cmd in ([main, tests] if order == "main_first" else [tests, main]):
        _run(["bash", "-c", cmd], env=env, cwd=clone, timeout=1800)
    out = _run(["bash", "-c", ". .venv/bin/activate && fastrnn --help"], env=env, cwd=clone)
    assert "train" in out and "bench" in out
