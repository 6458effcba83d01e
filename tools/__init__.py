"""Command-line tools: sample generation, training, export, benchmarks."""
