"""The pytest plugin of `durable` (entry point ``pytest11``, loaded wherever durable-workflows is
installed): the ``durable_env`` fixture and the ``durable`` marker that says what it serves.

    @pytest.mark.durable(workflows=[three_steps], activities=[add_one, double])
    def test_three_steps(durable_env):
        assert durable_env.execute(three_steps, 1) == 5

The marker takes the options of `durable.testing.SyncEnvironment`; on a module
(``pytestmark = pytest.mark.durable(...)``) or a class it serves every test in it, and one on a
test replaces it. Loading the plugin imports the `durable` package (its ``__init__``: about 70 ms
where trio is imported already), and `durable.testing` only once a test asks for the fixture: a
test run that does not use it gets one marker registered and one fixture defined, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from durable.testing import SyncEnvironment


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "durable(workflows=[...], activities=[...], **options): what the durable_env fixture's test "
        "environment serves (the options of durable.testing.SyncEnvironment)",
    )


@pytest.fixture
def durable_env(request: pytest.FixtureRequest) -> Iterator[SyncEnvironment]:
    """A running `durable.testing.SyncEnvironment` (a worker on a temporary store, time skipping)
    serving what the test's ``@pytest.mark.durable(workflows=[...], activities=[...])`` names."""
    marker = request.node.get_closest_marker("durable")
    if marker is None or marker.args:
        pytest.fail("the durable_env fixture needs a marker with keyword options naming what it serves: "
                    "@pytest.mark.durable(workflows=[...], activities=[...])", pytrace=False)
    from durable.testing import SyncEnvironment

    with SyncEnvironment(**marker.kwargs) as env:
        yield env
