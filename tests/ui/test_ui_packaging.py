"""The UI in the wheel: its subpackage and its static files (it loads nothing from the network),
and the optional extra that brings its server."""

from __future__ import annotations

import zipfile

from tests.test_packaging import PYPROJECT, _metadata, wheel  # noqa: F401 - the wheel fixture


def test_the_wheel_holds_the_ui_and_its_static_files(wheel: zipfile.ZipFile) -> None:  # noqa: F811
    names = set(wheel.namelist())
    for required in ("durable/ui/__init__.py", "durable/ui/_app.py", "durable/ui/static/app.js",
                     "durable/ui/static/app.css"):
        assert required in names, f"{required} is not in the wheel"


def test_the_ui_extra_brings_its_server(wheel: zipfile.ZipFile) -> None:  # noqa: F811
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(req.startswith("hypercorn") for req in extras["ui"])
    assert any(req.startswith("hypercorn") for req in extras["test"])
    requires = _metadata(wheel).get_all("Requires-Dist") or []
    assert any(r.startswith("hypercorn") and "extra == \"ui\"" in r for r in requires), requires
    # the core install does not need it
    assert not any(r.startswith("hypercorn") and "extra" not in r for r in requires)
