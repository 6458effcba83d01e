"""Sample generation, training, export, quantisation and evaluation of the shipped models.

Why a package: the scripts that make data/ and data/models/ belong together, apart from the benchmark
studies (``hltrun.tools.bench``); all of them take their model and sample names from
``hltrun.tools.catalogue`` and run as ``python -m hltrun.tools.physics.<script>``.
"""
