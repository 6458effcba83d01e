"""The benchmark studies behind ``hltbench`` (one module per sub-command), their shared runner and plots.

Why a package: every study is started one way (``hltbench <study>``, see ``cli.COMMANDS``) and shares
one runner (machine record, JSON/CSV, repeats, interleaving) instead of each carrying its own copy.
"""
