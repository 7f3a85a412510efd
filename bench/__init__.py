"""Reproducible benchmarks with baselines measured in the same run: `python -m bench` (`make bench`)."""
