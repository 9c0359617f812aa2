"""Tests of the push receiver, its models and its dedupe stores (a package: helpers import relatively)."""
