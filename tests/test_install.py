"""A non-editable ``pip install .`` into a fresh virtual environment installs one import name,
``hltrun``, with its shipped configs, samples and models, and runs the default path from any
directory: nothing depends on the checkout being there or editable."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("hltrun", "framework", "modules", "tools", "configs", "data", "setup.cfg", "pyproject.toml", "README.md")


def _copy_tracked(dest: Path) -> None:
    """The tracked files the wheel is built from (a copy, so the build never writes into the checkout)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", *SHIPPED], cwd=REPO, capture_output=True, check=True)
    names = [n for n in listed.stdout.decode().split("\0") if n]
    if not names:  # not a git checkout (an sdist): copy the folders as they are
        names = [str(p.relative_to(REPO)) for top in SHIPPED for p in (REPO / top).rglob("*") if p.is_file()] \
            + [t for t in SHIPPED if (REPO / t).is_file()]
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv (seeing this interpreter's packages for the dependencies) with hltrun pip-installed."""
    root = tmp_path_factory.mktemp("install")
    src, venv = root / "src", root / "venv"
    _copy_tracked(src)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:  # run from a venv: its packages too (a plain path: its .pth files,
        # an editable hltrun's among them, are not read, so only the installed copy answers to hltrun)
        (_site_packages(venv) / "_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    res = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--disable-pip-version-check", str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    shutil.rmtree(src)  # the installed copy must stand alone
    return venv


def _site_packages(venv: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))


@pytest.mark.slow
def test_only_the_hltrun_name_lands_in_site_packages(installed):
    site = _site_packages(installed)
    tops = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth", "__pycache__"))}
    assert "hltrun" in tops
    assert not tops & {"framework", "modules", "tools", "configs", "data"}, tops
    for shipped in ("configs/path.yaml", "data/qcd_dijet.root", "data/models/conv_vae.onnx",
                    "data/models/thresholds.json", "framework/report/hltrun-report.schema.json",
                    "framework/report/templates/report.html"):
        assert (site / "hltrun" / shipped).is_file(), shipped


@pytest.mark.slow
def test_the_installed_hltrun_runs_the_shipped_path_from_any_directory(installed, tmp_path):
    out = tmp_path / "out.root"
    reports = tmp_path / "reports"
    res = subprocess.run([str(installed / "bin" / "hltrun"), "configs/path.yaml", "-n", "40", "-q",
                          f"modules.out.file={out}", "modules.vae.backend=onnxruntime", "--report-dir", str(reports)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr  # hltrun.json validated against the installed schema
    assert out.stat().st_size > 0 and (reports / "hltrun.json").is_file()
    if (reports / "report.html").exists():  # (matplotlib installed) the page from the installed template
        assert "<h1>hltrun report: " in (reports / "report.html").read_text()
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import hltrun.framework, hltrun.data; print(hltrun.framework.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(_site_packages(installed)) in where and str(REPO) not in where
