"""CMSSW's service names are accepted as aliases (FastTimerService, SimpleMemoryCheck), once each."""

from __future__ import annotations

import pytest

from hltrun.framework import registry
from hltrun.framework.config import load
from hltrun.framework.errors import ConfigError
from hltrun.framework.services.memory import Memory
from hltrun.framework.services.timing import Timing

BASE = """
process: T
source: {type: TestCountingSource, n: 3}
modules:
  sq: {type: TestSquare, src: source}
paths:
  p: [sq]
"""


def test_cmssw_names_are_the_same_services():
    assert registry.service_class("FastTimerService") is Timing
    assert registry.service_class("SimpleMemoryCheck") is Memory


def test_an_alias_configures_the_service(write_config):
    cfg = load(write_config(BASE + "services:\n  FastTimerService: {histogram_bins: 20}\n"))
    assert cfg.services["FastTimerService"].cls is Timing


def test_a_service_and_its_alias_together_are_one_line(write_config):
    with pytest.raises(ConfigError, match=r"services.FastTimerService: the same service as services.Timing \(Timing\); "
                                          r"list it once"):
        load(write_config(BASE + "services:\n  Timing: {}\n  FastTimerService: {}\n"))
