"""pytest plugin for ihuyi-async (registered through the ``pytest11`` entry point)."""
