"""The public plugin API: what `pcnbench.api` exports, and the concrete session honouring it."""

from __future__ import annotations

import inspect
import re
import sqlite3

import pytest

import pcnbench.api as api
from pcnbench.hookspecs import hookimpl as api_hookimpl
from pcnbench.protocols import Session as SessionProtocol
from pcnbench.session import Session


def _members(protocol: type) -> dict[str, object]:
    skip = {"__init__", "__class_getitem__", "__init_subclass__", "__subclasshook__"}
    own = {n: v for n, v in vars(protocol).items() if not n.startswith("_") or n in skip}
    return {n: v for n, v in own.items() if n not in skip}


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in api.__all__:
        obj = getattr(api, name)
        assert obj is not None, name
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), f"pcnbench.api.{name} has no docstring"


def test_the_session_implements_every_member_of_the_protocol_with_its_signature() -> None:
    annotated = set(SessionProtocol.__annotations__)
    concrete = Session.__init__.__code__.co_names + tuple(vars(Session))
    for name in annotated:  # plain attributes the session sets
        assert name in concrete, f"Session never sets {name!r}"
    for name, member in _members(SessionProtocol).items():
        real = getattr(Session, name, None)
        assert real is not None, f"Session lacks {name!r}"
        if isinstance(member, property):
            assert isinstance(real, property), name
            assert (member.fset is None) == (real.fset is None), f"{name}: setter differs"
        elif callable(member):
            want = inspect.signature(member)
            have = inspect.signature(real)
            assert list(want.parameters) == list(have.parameters), name
            for p in want.parameters.values():
                assert have.parameters[p.name].default == p.default, f"{name}({p.name})"


def test_the_protocol_documents_every_method() -> None:
    for name, member in _members(SessionProtocol).items():
        target = member.fget if isinstance(member, property) else member
        if callable(target):
            assert (target.__doc__ or "").strip(), f"Session.{name} has no docstring"


class _Sloppy(api.Method):
    """A method whose validation raises a plain ValueError and whose result has a bad column."""

    name = "sloppy"

    def check(self, params: api.Params, recipe: api.Recipe) -> None:
        """Reject with the wrong exception type when the recipe trains 3 epochs."""
        if recipe.epochs == 3:
            raise ValueError("three epochs are not supported")

    def run(self, session: api.Session, params: api.Params) -> None:
        """Train, then record a column name the store cannot hold."""
        session.train()
        session.record(**{"top-5": 1.0})


class _SloppyPlugin:
    @api_hookimpl
    def register_methods(self, register: object) -> None:
        """Register `sloppy`."""
        register(_Sloppy())  # type: ignore[operator]


def test_a_plugin_validation_that_raises_the_wrong_type_is_a_located_error(write_suite) -> None:
    from pcnbench.errors import SuiteError
    from pcnbench.suite import load_suite
    from tests.conftest import BASE_SUITE

    host = api.load_plugins([("sloppy", _SloppyPlugin())])
    text = BASE_SUITE.replace("  - dense", "  - sloppy").replace("epochs: 2", "epochs: 3")
    with pytest.raises(SuiteError) as caught:
        load_suite(write_suite(text), host)
    message = str(caught.value)
    assert re.search(r"suite\.yaml:\d+:\d+: methods\[0\]:", message), message
    assert "raised ValueError in check: three epochs are not supported" in message
    assert "ParamError" in message  # says how to reject a value properly


def test_a_bad_result_column_fails_its_cell_with_the_reason_and_the_run_goes_on(
    write_suite, tmp_path
) -> None:
    from pcnbench.runner import Runner
    from pcnbench.suite import load_suite
    from tests.conftest import BASE_SUITE

    host = api.load_plugins([("sloppy", _SloppyPlugin())])
    text = BASE_SUITE.replace("  - dense", "  - sloppy\n  - dense")
    loaded = load_suite(write_suite(text), host)
    summary = Runner(loaded, host, output=tmp_path / "out", metering=False).run()
    assert len(summary.failed) == 1 and len(summary.done) == 1
    with sqlite3.connect(tmp_path / "out" / "results.db") as db:
        (error,) = db.execute("SELECT error FROM cells WHERE status = 'failed'").fetchone()
    assert "record(top-5=...): a result column name must be letters, digits and _" in error
