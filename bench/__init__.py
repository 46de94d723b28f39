"""Benchmarks of Panopticon against the best this machine allows (`make bench`, not part of `make test`).

Every figure is measured side by side with its ceiling in the same run, so ratios hold on a noisy
machine even when absolute numbers do not. Sections (ingest, query, errors) are independent: one
that cannot run is recorded as "not run: <why>" and the others still run.
"""
