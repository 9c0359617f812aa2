"""The ihuyi pytest plugin, run in fresh pytest sessions (pytester): fixtures, marker, strictness,
under anyio's plugin and under pytest-asyncio, and the FastAPI sample project."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent.parent / "example_app"
INI = """
[pytest]
addopts = -p no:cacheprovider --strict-markers
filterwarnings = error
"""
ASYNCIO_INI = INI + "asyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".ini", pytest=ASYNCIO_INI)
    return pytester


def test_marker_is_registered(project: pytest.Pytester) -> None:
    result = project.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.ihuyi(**options):*"])


def test_fixtures_under_anyio_asyncio_and_trio(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from ihuyi_async.testing import Emulator

        pytestmark = pytest.mark.anyio

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        async def test_send(ihuyi_client, ihuyi_emulator):
            assert isinstance(ihuyi_emulator, Emulator)
            sent = await ihuyi_client.send("13800138000", "您的验证码是：2468")
            assert ihuyi_emulator.messages[0].smsid == sent.smsid
            assert ihuyi_emulator.last_code_for("13800138000") == "2468"
            assert (await ihuyi_client.balance()).num == 999
        """
    )
    project.runpytest().assert_outcomes(passed=2)


def test_fixtures_under_pytest_asyncio(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.ihuyi(balance=1, client={"limiter": None})
        async def test_balance_runs_out(ihuyi_client, ihuyi_emulator):
            from ihuyi_async import AccountError
            await ihuyi_client.send("13800138000", "hello")
            with pytest.raises(AccountError) as info:
                await ihuyi_client.send("13900139000", "hello")
            assert info.value.code == 4051
        """
    )
    project.runpytest("-p", "no:anyio").assert_outcomes(passed=1)


def test_marker_options_merge_module_then_function(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        pytestmark = [pytest.mark.anyio, pytest.mark.ihuyi(accounts={"A": "K"}, balance=7,
                                                          client={"flavour": "json"})]

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.ihuyi(balance=3, strict_templates=True)
        async def test_nearest_wins(ihuyi_client, ihuyi_emulator):
            assert ihuyi_emulator.accounts == ["A"]
            assert ihuyi_emulator.balance_of("A") == 3
            assert ihuyi_emulator.strict_templates
            assert ihuyi_client.flavour == "json"
            await ihuyi_client.send_template("13800138000", template_id=1, variables=["5555"])

        async def test_module_defaults(ihuyi_emulator):
            assert ihuyi_emulator.balance_of() == 7
        """
    )
    project.runpytest().assert_outcomes(passed=2)


def test_loopback_client_uses_a_real_socket(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.ihuyi(loopback=True)
        async def test_over_loopback(ihuyi_client, ihuyi_server, ihuyi_emulator):
            assert ihuyi_server.url.startswith("http://127.0.0.1:")
            await ihuyi_client.send("13800138000", "通知")
            assert len(ihuyi_emulator.messages) == 1
        """
    )
    project.runpytest().assert_outcomes(passed=1)


def test_strict_teardown_fails_on_unused_faults_and_can_be_relaxed(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest
        from ihuyi_async.testing import faults

        def test_leaves_a_fault(ihuyi_emulator):
            ihuyi_emulator.fail_next(faults.http_error(503))

        @pytest.mark.ihuyi(strict=False)
        def test_relaxed(ihuyi_emulator):
            ihuyi_emulator.fail_next(faults.http_error(503))
        """
    )
    result = project.runpytest()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*scheduled faults never used: http_error x1*"])


def test_marker_rejects_positional_arguments(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        @pytest.mark.ihuyi(5)
        def test_bad(ihuyi_emulator):
            pass
        """
    )
    result = project.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*keyword arguments only*"])


@pytest.mark.parametrize("runner", ["anyio", "pytest-asyncio"])
def test_fastapi_sample_project_passes(project: pytest.Pytester, runner: str) -> None:
    package = project.mkpydir("signup_project")  # not "example_app": that one is imported already
    for name in ("app.py", "test_signup.py"):
        (package / name).write_text((EXAMPLE / name).read_text(encoding="utf-8"), encoding="utf-8")
    if runner == "anyio":
        project.makefile(".ini", pytest=INI)
        result = project.runpytest("-p", "no:asyncio")
    else:
        # The same tests, driven by pytest-asyncio instead of anyio's plugin.
        test = package / "test_signup.py"
        source = test.read_text(encoding="utf-8").replace("pytest.mark.anyio", "pytest.mark.asyncio")
        source = source.replace("@pytest.fixture\nasync def", "@pytest_asyncio.fixture\nasync def")
        source = source.replace("import pytest\n", "import pytest\nimport pytest_asyncio\n", 1)
        test.write_text(source, encoding="utf-8")
        result = project.runpytest("-p", "no:anyio")
    result.assert_outcomes(passed=9)


ROOT = Path(__file__).parent.parent.parent


def _readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


def test_readme_verifier_example_passes_with_no_marker(project: pytest.Pytester) -> None:
    # The default client is the legacy flavour, which has no template mode: the fixture
    # must still send a code there, as the README's "In tests" example shows.
    project.makepyfile(
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def anyio_backend():\n"
        "    return 'asyncio'\n\n" + _readme_block("### In tests")
    )
    project.makefile(".ini", pytest=INI)
    result = project.runpytest("-p", "no:asyncio")
    result.assert_outcomes(passed=1)


def test_verifier_fixture_per_flavour(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        async def test_legacy_sends_the_trial_text(ihuyi_verifier, ihuyi_emulator):
            await ihuyi_verifier.start("13800138000")
            message = ihuyi_emulator.messages[-1]
            code = ihuyi_emulator.last_code_for("13800138000")
            assert message.template_id is None
            assert message.content == f"您的验证码是：{code}。请不要把验证码泄露给其他人。"

        @pytest.mark.ihuyi(client={"flavour": "json"})
        async def test_json_sends_template_1(ihuyi_verifier, ihuyi_emulator):
            await ihuyi_verifier.start("13800138000")
            assert ihuyi_emulator.messages[-1].template_id == 1
        """
    )
    project.makefile(".ini", pytest=INI)
    result = project.runpytest("-p", "no:asyncio")
    result.assert_outcomes(passed=2)
