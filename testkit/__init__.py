"""What the tests and the benchmarks both use to drive the real plugin: a driver that talks to it exactly as dockerd
does (``dockerd_driver``) and the real supervisor started in its own session (``plugin``).

Its own package so that ``bench/`` need not import ``tests/`` (an import-linter contract in pyproject.toml): it may
import the plugin's packages, and imports neither ``tests`` nor ``bench``.
"""
