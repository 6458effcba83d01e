"""Built-in hltrun plugins: source, batcher, VAE scorer, filter, output. Registered through the
``hltrun.modules`` and ``hltrun.backends`` entry-point groups (setup.cfg), as any plugin is."""
