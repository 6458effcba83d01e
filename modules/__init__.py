"""Built-in hltrun plugins: source, batcher, VAE scorer, filter, output (registered by ``modules.plugins``)."""
