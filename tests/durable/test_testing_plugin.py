"""The pytest plugin (`durable._pytest_plugin`, entry point ``pytest11``): the ``durable_env``
fixture, loaded from the installed package in a fresh pytest process, as a user's project gets it."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest
import durable
from hello import Approval, add_one, double, three_steps

pytestmark = pytest.mark.durable(workflows=[three_steps, Approval], activities=[add_one, double])


def test_three_steps(durable_env, request):
    assert request.config.pluginmanager.has_plugin("durable")  # loaded by its entry point
    assert durable_env.execute(three_steps, 1) == 5


def test_a_day_passes_at_once(durable_env):
    handle = durable_env.start(Approval, {"amount": 1})
    with pytest.raises(durable.WorkflowFailed, match="did not hold within 3600 s"):
        handle.result(timeout=60)


@pytest.mark.durable(workflows=[three_steps], activities=[add_one, double],
                     mock_activities={"add_one": lambda x: x + 100})
def test_a_marker_on_the_test_replaces_the_modules(durable_env):
    assert sorted(durable_env.worker.registry.workflows) == ["three_steps"]
    assert durable_env.execute(three_steps, 1, timeout=60) == 302
'''


def test_the_fixture_serves_what_the_marker_names(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS, hello=(ROOT / "examples" / "hello.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers", "-W", "error")
    result.assert_outcomes(passed=3)


def test_without_a_marker_the_fixture_says_what_it_needs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_it(durable_env):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert ("the durable_env fixture needs a marker with keyword options naming what it serves: "
            "@pytest.mark.durable(workflows=[...], activities=[...])") in result.stdout.str()


def test_the_plugin_goes_when_switched_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="def test_it():\n    pass\n")
    assert "durable_env" in pytester.runpytest_inprocess("-p", "no:cacheprovider", "--fixtures").stdout.str()
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:durable", "--fixtures")
    assert "durable_env" not in result.stdout.str()
