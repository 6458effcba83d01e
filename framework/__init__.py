"""hltrun framework: a CMSSW-style event loop, configured by YAML, watched by services."""

__version__ = "0.1.0"
