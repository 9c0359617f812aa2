"""Fuzzing of every answer parser and every push parser, and of the push receiver (#12)."""
