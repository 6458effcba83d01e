"""Plugins are found through entry-point groups: hltrun's own (installed by setup.cfg) exactly as a
user's package is. The install test builds a real third-party distribution and runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from hltrun.framework import registry
from hltrun.framework.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_group(monkeypatch):
    """Replace the installed entry points of one group with real ``EntryPoint`` objects (their
    ``load()`` imports ``module:attr`` as importlib.metadata does)."""

    def install(group: str, eps: list[EntryPoint]) -> None:
        real = registry.entry_points
        monkeypatch.setattr(registry, "entry_points",
                            lambda group=None: eps if group == install.group else real(group=group))
        install.group = group
        registry._group.cache_clear()

    yield install
    registry._group.cache_clear()


def test_builtins_come_from_the_installed_entry_points():
    """Every built-in is an entry point of the installed hltrun distribution, not an import the
    framework makes: the names the YAML uses, mapped to the classes of hltrun.modules."""
    from importlib.metadata import distribution

    declared = {(ep.group, ep.name): ep.value for ep in distribution("hltrun").entry_points
                if ep.group.startswith("hltrun.")}
    assert declared[("hltrun.modules", "RootJetSource")] == "hltrun.modules.root_source:RootJetSource"
    assert {g for g, _ in declared} == {"hltrun.modules", "hltrun.services", "hltrun.backends"}
    for (group, name), value in declared.items():
        cls = registry.plugin_class(group, name, "test")
        assert f"{cls.__module__}:{cls.__qualname__}" == value


def test_entry_point_module_is_found(fake_group, tmp_path, monkeypatch):
    (tmp_path / "user_plugin_a.py").write_text(textwrap.dedent("""
        from hltrun import Producer

        class UserProducer(Producer):
            def produce(self, event):
                event.put(0)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_group(registry.ENTRY_POINT_GROUP,
               [EntryPoint("UserEntryPointProducer", "user_plugin_a:UserProducer", registry.ENTRY_POINT_GROUP)])
    assert registry.module_class("UserEntryPointProducer").__name__ == "UserProducer"
    assert "UserEntryPointProducer" in registry.known_names(registry.ENTRY_POINT_GROUP)


def test_broken_entry_point_is_one_clear_error(fake_group):
    fake_group(registry.ENTRY_POINT_GROUP, [EntryPoint("Bad", "missing_dep_pkg_xyz:Mod", registry.ENTRY_POINT_GROUP)])
    with pytest.raises(ConfigError, match=r"plugin entry point 'Bad' \(missing_dep_pkg_xyz:Mod\) failed to load: "
                                          r"No module named 'missing_dep_pkg_xyz'"):
        registry.module_class("Bad")


def test_unknown_type_suggests_close_names():
    with pytest.raises(ConfigError, match="unknown module type 'JetBatchr'; did you mean JetBatcher"):
        registry.module_class("JetBatchr")


def test_no_installed_entry_points_says_to_install(fake_group):
    fake_group(registry.SERVICE_ENTRY_POINT_GROUP, [])
    with pytest.raises(ConfigError, match="no 'hltrun.services' entry points are installed: install hltrun"):
        registry.service_class("NotThere")


PLUGIN_SETUP = """
[metadata]
name = hltrun-demo-plugin
version = 0.1

[options]
py_modules = hltrun_demo_plugin

[options.entry_points]
hltrun.modules =
    DemoJetCounter = hltrun_demo_plugin:DemoJetCounter
"""

PLUGIN_CODE = '''
"""A third-party plugin: it imports only the public API."""
from dataclasses import dataclass

from hltrun import Analyzer, InputTag


@dataclass
class DemoJetCounterParameters:
    src: InputTag = InputTag("source")


class DemoJetCounter(Analyzer):
    Parameters = DemoJetCounterParameters

    def begin_job(self, job):
        self.jets = 0

    def analyze(self, event):
        self.jets += len(event.get(self.params.src).pt)

    def end_job(self):
        print(f"DemoJetCounter saw {self.jets} jets")
'''

PLUGIN_CONFIG = """
process: DEMO
options: {maxEvents: 20, wantSummary: false}
source: {type: RootJetSource, files: [data/qcd_dijet.root]}
modules:
  counter: {type: DemoJetCounter}
paths:
  p: [counter]
"""


@pytest.mark.slow
def test_a_third_party_plugin_package_installs_and_runs(tmp_path):
    """pip-install a tiny distribution that declares one ``hltrun.modules`` entry point, then run a
    job that names it: found without hltrun naming it, through the public API only."""
    pkg = tmp_path / "plugin"
    pkg.mkdir()
    (pkg / "setup.cfg").write_text(PLUGIN_SETUP)
    (pkg / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n')
    (pkg / "hltrun_demo_plugin.py").write_text(PLUGIN_CODE)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(pkg)],
                   check=True, capture_output=True, timeout=300)
    config = tmp_path / "demo.yaml"
    config.write_text(PLUGIN_CONFIG)
    env = {**os.environ, "PYTHONPATH": str(target)}
    res = subprocess.run([sys.executable, "-m", "hltrun.framework.cli", str(config)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    jets = int(res.stdout.split("DemoJetCounter saw ")[1].split()[0])
    assert jets > 20  # 20 events of the dijet sample carry several jets each
