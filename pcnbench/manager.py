"""Plugin loading: a pluggy manager over the `pcnbench` entry points, and the name registries."""

from __future__ import annotations

import difflib
import importlib.metadata as md
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from pcnbench import hookspecs
from pcnbench.contracts import DatasetPlugin, Executor, Meter, Method, ModelPlugin, Reporter
from pcnbench.errors import PluginError

GROUP = "pcnbench"
T = TypeVar("T")

_KINDS: dict[str, tuple[str, type]] = {
    "method": ("register_methods", Method),
    "model": ("register_models", ModelPlugin),
    "dataset": ("register_datasets", DatasetPlugin),
    "reporter": ("register_reporters", Reporter),
    "meter": ("register_meters", Meter),
    "executor": ("register_executors", Executor),
}


@dataclass
class PluginInfo:
    """One loaded plugin: where it came from and what it registered."""

    name: str
    distribution: str
    version: str
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    cause: BaseException | None = field(default=None, repr=False)

    def describe(self) -> str:
        """Say which plugin failed and why: plugin 'name' (distribution version): error."""
        where = f"{self.distribution or '?'} {self.version}".strip()
        where = where if where.startswith("(") else f"({where})"  # "(registered in code)"
        return f"plugin '{self.name}' {where}: {self.error}"


@dataclass
class Registered(Generic[T]):
    """A registered object and the plugin that registered it."""

    obj: T
    plugin: str


class Family:
    """Plugins of one kind named `prefix` + a member, listed and built only when asked for.

    Register one like a plugin object, e.g. ``register(Family("torchvision:", list_archs,
    TorchvisionModel))``, when listing the members is slow (it imports a large library):
    loading plugins stays fast, and only a suite that names a member (or a listing of every
    name) calls `members`. `members()` returns the member names without the prefix; `build(member)`
    returns the plugin object, whose `name` must be `prefix + member`.
    """

    def __init__(
        self, prefix: str, members: Callable[[], Iterable[str]], build: Callable[[str], Any]
    ) -> None:
        if not prefix:
            raise ValueError("a Family needs a non-empty name prefix")
        self.prefix = prefix
        self._list = members
        self._build = build
        self._members: list[str] | None = None
        self._built: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """How listings show the family before its members are known: `prefix*`."""
        return f"{self.prefix}*"

    def __repr__(self) -> str:
        return f"Family({self.prefix!r})"

    def names(self) -> list[str]:
        """The members' full names (prefix + member), listed on first use only."""
        if self._members is None:
            self._members = [self.prefix + str(member) for member in self._list()]
        return list(self._members)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.startswith(self.prefix) and name in self.names()

    def get(self, name: str) -> Any:
        """The member plugin named `name` (built once); KeyError if it is not a member."""
        if name not in self:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = self._build(name[len(self.prefix) :])
        return self._built[name]


class Registry(Generic[T]):
    """Name → object for one kind (methods, models or datasets), families of names included."""

    def __init__(
        self,
        kind: str,
        failures: Callable[[], list[PluginInfo]] | None = None,
        base: type | None = None,
    ) -> None:
        self.kind = kind
        self._items: dict[str, Registered[T]] = {}
        self._families: dict[str, Registered[Family]] = {}  # by prefix
        self._failures = failures  # plugins that failed to load: one may have provided a name
        self._base = base  # what a family member must be an instance of

    def add(self, obj: T | Family, plugin: str) -> None:
        """Register `obj` under its name, or a Family under its prefix; twice names both plugins."""
        if isinstance(obj, Family):
            if obj.prefix in self._families:
                other = self._families[obj.prefix].plugin
                raise PluginError(
                    f"{self.kind} family '{obj.name}' is registered by two plugins: "
                    f"'{other}' and '{plugin}'"
                )
            self._families[obj.prefix] = Registered(obj, plugin)
            return
        name = getattr(obj, "name", "")
        if name in self._items:
            other = self._items[name].plugin
            raise PluginError(
                f"{self.kind} '{name}' is registered by two plugins: '{other}' and '{plugin}'"
            )
        self._items[name] = Registered(obj, plugin)

    def _family_of(self, name: str) -> Registered[Family] | None:
        """The family whose prefix `name` starts with (the longest), if any."""
        found = [f for prefix, f in self._families.items() if name.startswith(prefix)]
        return max(found, key=lambda f: len(f.obj.prefix), default=None)

    def _members(self, family: Registered[Family]) -> list[str]:
        """The family's members; a listing that raises is a PluginError naming the plugin."""
        try:
            return family.obj.names()
        except Exception as exc:
            raise PluginError(
                f"plugin '{family.plugin}' could not list its {self.kind}s "
                f"'{family.obj.name}': {type(exc).__name__}: {exc}"
            ) from exc

    def __contains__(self, name: object) -> bool:
        if name in self._items:
            return True
        family = self._family_of(name) if isinstance(name, str) else None
        return family is not None and name in self._members(family)

    def get(self, name: str) -> T:
        """The object registered as `name` (KeyError if none)."""
        if name in self._items:
            return self._items[name].obj
        family = self._family_of(name)
        if family is None or name not in self._members(family):
            raise KeyError(name)
        try:
            obj = family.obj.get(name)
        except Exception as exc:
            raise PluginError(
                f"plugin '{family.plugin}' failed to build {self.kind} '{name}': "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if getattr(obj, "name", None) != name or (
            self._base is not None and not isinstance(obj, self._base)
        ):
            raise PluginError(
                f"plugin '{family.plugin}' built {obj!r} for {self.kind} '{name}' of family "
                f"'{family.obj.name}'; expected a {self._base_name()} instance named '{name}'"
            )
        return obj

    def _base_name(self) -> str:
        return f"pcnbench.api.{self._base.__qualname__}" if self._base else "plugin"

    def plugin_of(self, name: str) -> str:
        """Name of the plugin that registered `name`."""
        if name in self._items:
            return self._items[name].plugin
        family = self._family_of(name)
        if family is None or name not in self._members(family):
            raise KeyError(name)
        return family.plugin

    def names(self) -> list[str]:
        """Registered names, sorted (every family's members listed)."""
        members = (n for f in self._families.values() for n in self._members(f))
        return sorted({*self._items, *members})

    def unknown_message(self, name: str) -> str:
        """Say that `name` is not registered, with a close match and the known names.

        Only families whose prefix `name` (nearly) starts with list their members: the
        others show as `prefix*`, so a typo costs no slow listing.
        """
        shown: set[str] = set(self._items)
        for family in self._families.values():
            prefix = family.obj.prefix
            head = name[: len(prefix)]
            near = head == prefix or difflib.get_close_matches(head, [prefix], n=1, cutoff=0.8)
            try:
                shown.update(self._members(family) if near else [family.obj.name])
            except PluginError:  # the message is about `name`; the listing failure stays out
                shown.add(family.obj.name)
        listed = sorted(shown)
        candidates = [n for n in listed if not n.endswith("*")]
        close = difflib.get_close_matches(name, candidates, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(listed[:30])
        listing += f", … ({len(listed)} in all)" if len(listed) > 30 else ""
        message = f"unknown {self.kind} '{name}'{hint} (known: {listing})"
        failed = self._failures() if self._failures is not None else []
        if failed:
            which = "; ".join(p.describe() for p in failed)
            message += f"; plugin(s) that failed to load and may be the one providing it: {which}"
        return message


class PluginHost:
    """The loaded plugins: the pluggy manager and one registry per kind."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.methods: Registry[Method] = Registry("method", self.failures, Method)
        self.models: Registry[ModelPlugin] = Registry("model", self.failures, ModelPlugin)
        self.datasets: Registry[DatasetPlugin] = Registry("dataset", self.failures, DatasetPlugin)
        self.reporters: Registry[Reporter] = Registry("reporter", self.failures, Reporter)
        self.meters: Registry[Meter] = Registry("meter", self.failures, Meter)
        self.executors: Registry[Executor] = Registry("executor", self.failures, Executor)
        # plugins registered in code, as importable references a worker process can rebuild
        self.in_code: dict[str, str | None] = {}
        self.infos: dict[str, PluginInfo] = {}

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (for lifecycle hooks)."""
        return self.pm.hook

    def failures(self) -> list[PluginInfo]:
        """Plugins that failed to load."""
        return [info for info in self.infos.values() if info.error]

    def failure_warning(self) -> str:
        """One warning line per plugin that failed to load ("" when none did)."""
        return "\n".join(
            f"warning: {p.describe()}; it is skipped, and only suites naming what it provides fail"
            for p in self.failures()
        )

    def raise_for_failures(self) -> None:
        """Raise a PluginError describing every plugin that failed to load."""
        bad = self.failures()
        if bad:
            lines = [p.describe() for p in bad]
            cause = next((p.cause for p in bad if p.cause is not None), None)
            raise PluginError("plugin(s) failed to load:\n  " + "\n  ".join(lines)) from cause

    def add(self, plugin: object, name: str, distribution: str = "", version: str = "") -> None:
        """Register one plugin object (module or instance) under `name`."""
        if self.pm.has_plugin(name) or name in self.infos:
            prev = self.infos.get(name)
            where = f" (from {prev.distribution})" if prev else ""
            raise PluginError(
                f"plugin name '{name}' from {distribution or 'an explicit registration'} "
                f"is already used by another plugin{where}"
            )
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            if self.pm.has_plugin(name):  # pluggy keeps what it registered before the bad hook
                self.pm.unregister(name=name)
            raise PluginError(
                f"plugin '{name}' ({distribution or 'registered in code'}): {exc}"
            ) from exc
        self.infos[name] = PluginInfo(name, distribution, version)

    def collect(self, strict: bool = True) -> None:
        """Call the register_* hooks of every plugin and fill the registries.

        With `strict=False` a plugin whose hook fails is recorded as failed instead of raising.
        """
        unknown = []
        for hook, impls in list(self._unverified_hooks()):
            for impl in impls:
                message = f"'{impl.plugin_name}' implements unknown hook '{hook}'"
                if strict or impl.plugin_name not in self.infos:
                    unknown.append(message)
                elif self.pm.has_plugin(impl.plugin_name):  # skipped: none of its hooks run
                    self.pm.unregister(name=impl.plugin_name)
                    info = self.infos[impl.plugin_name]
                    info.error = f"implements unknown hook '{hook}' (see pcnbench.hookspecs)"
        if unknown:
            raise PluginError("; ".join(unknown))
        for kind, (hook_name, base) in _KINDS.items():
            registry = getattr(self, kind + "s")
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                plugin = impl.plugin_name

                def register(
                    obj: Any,
                    _plugin: str = plugin,
                    _base: type = base,
                    _registry: Registry = registry,
                    _kind: str = kind,
                ) -> None:
                    if not isinstance(obj, (_base, Family)) or not getattr(obj, "name", ""):
                        raise PluginError(
                            f"plugin '{_plugin}' registered {obj!r}, which is not a named "
                            f"pcnbench.api.{_base.__qualname__} instance (or a Family of them)"
                        )
                    _registry.add(obj, _plugin)
                    info = self.infos.get(_plugin)
                    if info is not None:
                        info.registers.setdefault(_kind + "s", []).append(obj.name)

                try:
                    impl.function(register=register)
                except PluginError as exc:
                    if strict or plugin not in self.infos or "two plugins" in str(exc):
                        raise
                    self.infos[plugin].error, self.infos[plugin].cause = str(exc), exc
                except Exception as exc:
                    message = (
                        f"plugin '{plugin}' raised in {hook_name}: {type(exc).__name__}: {exc}"
                    )
                    if strict or plugin not in self.infos:
                        raise PluginError(message) from exc
                    self.infos[plugin].error, self.infos[plugin].cause = message, exc

    def _unverified_hooks(self) -> Iterable[tuple[str, list[Any]]]:
        for name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, name)
            if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
                yield name, caller.get_hookimpls()


def importable(plugin: object) -> str | None:
    """'module' or 'module:Class' that rebuilds `plugin` in another process (None: cannot)."""
    import inspect
    import sys

    if inspect.ismodule(plugin):
        return plugin.__name__
    cls = type(plugin)
    module = sys.modules.get(cls.__module__)
    if module is None or getattr(module, cls.__qualname__, None) is not cls:
        return None
    return f"{cls.__module__}:{cls.__qualname__}"


def rebuild(reference: str) -> object:
    """Import the plugin an `importable` reference names (instantiating a class)."""
    import importlib

    module_name, _, qualname = reference.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, qualname)() if qualname else module


def load_plugins(
    extra: Iterable[tuple[str, object]] = (), *, entry_points: bool = True, strict: bool = False
) -> PluginHost:
    """Load the `pcnbench` entry points (plus `extra` (name, plugin) pairs) and what they register.

    A plugin that fails to import, or whose register hook fails, is recorded (see
    `PluginHost.failures` and `failure_warning`) and skipped: suites that do not use it still
    run, and a name it may have provided is reported unknown together with the failure. With
    `strict` such a failure raises PluginError instead. Conflicts between plugins (one name
    registered by two) always raise.
    """
    host = PluginHost()
    if entry_points:
        for ep in sorted(md.entry_points(group=GROUP), key=lambda e: e.name):
            dist = ep.dist.metadata["Name"] if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            try:
                module = ep.load()
            except Exception as exc:
                host.infos[ep.name] = PluginInfo(
                    ep.name,
                    dist,
                    version,
                    error=f"import of {ep.value} failed: {type(exc).__name__}: {exc}",
                    cause=exc,
                )
                continue
            try:
                host.add(module, ep.name, dist, version)
            except PluginError as exc:
                if strict or ep.name in host.infos:  # a name two distributions use: a conflict
                    raise
                host.infos[ep.name] = PluginInfo(
                    ep.name, dist, version, error=str(exc), cause=exc.__cause__ or exc
                )
    for name, plugin in extra:
        host.add(plugin, name, "(registered in code)", "")
        host.in_code[name] = importable(plugin)
    host.collect(strict=False)
    if strict:
        host.raise_for_failures()
    return host
