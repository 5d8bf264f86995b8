"""Benchmarks for media-gateway: ``python -m bench [NAME ...]`` (``make bench``).

Each benchmark module has ``run(options) -> Report``; it starts every server it measures
as a pinned subprocess on 127.0.0.1, compares against baselines measured in the same
run, and the results land in ``bench/results/NAME.{md,json,png}``.
"""
