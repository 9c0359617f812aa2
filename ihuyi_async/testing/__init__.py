"""Test doubles for ihuyi-async: an emulator of the provider and a pytest plugin."""

__all__: list[str] = []
