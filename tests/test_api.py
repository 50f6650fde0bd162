"""The public plugin API: what `pcnbench.api` exports, and the concrete session honouring it."""

from __future__ import annotations

import inspect

import pcnbench.api as api
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
