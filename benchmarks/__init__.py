"""Benchmarks of ihuyi-async: ``python -m benchmarks [--quick]`` (see :mod:`benchmarks.run`)."""
