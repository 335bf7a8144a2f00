"""The distribution: ``python -m build`` makes an sdist and a wheel that pass
``twine check``, and the wheel works installed in a fresh venv.

Slow-ish (about 30 s: two isolated builds, a venv, a few installs) and the
same on every Python, so it runs where asked for: with ``CTXSERVE_FULL_CI=1``
(.ci/run sets it for its first run only) or when selected with
``pytest -m packaging``. It needs the ``[test]`` extra (build, twine) and the
package index for the build backend and gunicorn; only the demo check is
skipped when werkzeug cannot be installed.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import ctxserve

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.packaging


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    selected = "packaging" in (request.config.getoption("markexpr", "") or "")
    if not selected and os.environ.get("CTXSERVE_FULL_CI") != "1":
        pytest.skip("builds and installs the package (~30 s): set CTXSERVE_FULL_CI=1 "
                    "or run `pytest -m packaging`")


def run(*command: str | Path, timeout: float = 180, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run *command*; on failure the assertion shows its output."""
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, (
        f"{' '.join(map(str, command))} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, and the wheel built from it (build's default), in a temporary directory."""
    pytest.importorskip("build", reason="needs the [test] extra (build)")
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, timeout=300)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(zf.read(name).decode())


def test_twine_check_passes(dists: dict[str, Path]) -> None:
    pytest.importorskip("twine", reason="needs the [test] extra (twine)")
    out = run(sys.executable, "-m", "twine", "check", "--strict", dists["sdist"], dists["wheel"])
    assert out.stdout.count("PASSED") == 2, out.stdout


def test_wheel_contents(dists: dict[str, Path]) -> None:
    wheel = dists["wheel"]
    assert wheel.name == f"ctxserve-{ctxserve.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    info = f"ctxserve-{ctxserve.__version__}.dist-info"
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ctxserve").glob("*.py")}
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"
    assert "ctxserve/py.typed" in names
    assert f"{info}/licenses/LICENSE" in names
    assert f"{info}/entry_points.txt" in names
    # Nothing but the package and its metadata: no tests, apps or deploy files.
    assert {n.split("/")[0] for n in names} == {"ctxserve", info}


def test_sdist_contents(dists: dict[str, Path]) -> None:
    top = f"ctxserve-{ctxserve.__version__}"
    with tarfile.open(dists["sdist"]) as tf:
        names = set(tf.getnames())
    for name in ("pyproject.toml", "README.md", "LICENSE", "PKG-INFO", "ctxserve/py.typed",
                 "ctxserve/__init__.py", "ctxserve/cli.py"):
        assert f"{top}/{name}" in names, name


def test_metadata_is_complete(dists: dict[str, Path]) -> None:
    meta = wheel_metadata(dists["wheel"])
    assert meta["Name"] == "ctxserve"
    assert meta["Version"] == ctxserve.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Summary"] and meta["Keywords"] and meta["Author"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().lstrip().startswith("# ctxserve")  # the README is the long description
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Issues"} <= set(urls), urls
    classifiers = meta.get_all("Classifier", [])
    for minor in (11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], \
        "with License-Expression (PEP 639) no license classifier may be given"
    requires = [r for r in meta.get_all("Requires-Dist", []) if "extra ==" not in r]
    assert "gunicorn" in [r.split(">")[0].split("=")[0].split(";")[0].strip() for r in requires]


def test_wheel_works_in_a_fresh_venv(dists: dict[str, Path], tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, pip = venv / "bin" / "python", [venv / "bin" / "python", "-m", "pip", "-q"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    # The wheel alone, then what its metadata says it needs: nothing else comes along.
    run(*pip, "install", "--no-deps", dists["wheel"], env=env)
    requires = [r for r in wheel_metadata(dists["wheel"]).get_all("Requires-Dist", [])
                if "extra ==" not in r]
    run(*pip, "install", *requires, env=env)

    cli = venv / "bin" / "ctxserve"
    out = run(cli, "--version", cwd=tmp_path, env=env)
    assert out.stdout.strip() == f"ctxserve {ctxserve.__version__}"
    where = run(python, "-c", "import ctxserve; print(ctxserve.__file__)", cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    # The demo, from the checkout's deploy/ and apps/, served by the installed package
    # with the gevent extra (deploy/ctxserve.toml's worker), as the README installs it.
    need = subprocess.run([*map(str, pip), "install", f"{dists['wheel']}[gevent]",
                           "-r", str(ROOT / "apps" / "requirements.txt")],
                          capture_output=True, text=True, timeout=180, env=env)
    if need.returncode != 0:
        pytest.skip(f"could not install the demo's requirements (gevent, werkzeug): {need.stderr[-500:]}")
    out = run(cli, "check", ROOT / "deploy" / "ctxserve.toml", cwd=tmp_path, env=env)
    for name in ("ledger", "hello", "envinfo"):
        assert name in out.stdout
    assert "loaded" in out.stdout
