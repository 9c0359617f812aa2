import importlib

import pytest


@pytest.mark.parametrize("name", ["ihuyi_async", "ihuyi_async.limiter", "ihuyi_async.pushes", "ihuyi_async.testing"])
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_library_does_not_import_testing_or_cli() -> None:
    import subprocess
    import sys

    code = ("import sys, ihuyi_async, ihuyi_async.limiter, ihuyi_async.pushes;"
            "bad=[m for m in sys.modules if m.startswith('ihuyi_async.testing') or m in ('ihuyi_async._cli','ihuyi_async._demo')];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
