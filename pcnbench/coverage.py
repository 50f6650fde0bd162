"""The account of coverage: which of a model's parameter tensors a method reduced, and why it
left each of the others as it was.

A method builds a `Coverage` from the model it was given (before reducing it), marks the
tensors it reduced and the ones it left dense with a reason, and records `coverage.columns()`.
Tensors it says nothing about get the conventional reason of their kind (a bias, a
normalization's scale and shift, an embedding) or, for anything else, "<module type> is not
supported by <method>": no tensor goes unaccounted. Works on a model built on the meta device.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Coverage", "LeftDense", "Reason", "coverage_of"]

# `validate` warns when a method will leave more than this share of a model dense for reasons
# other than the suite's own patterns.
WARN_SHARE = 0.10


class Reason:
    """The reasons a tensor stays dense, in the words results and warnings use."""

    BIAS = "bias (left dense by convention)"
    NORMALIZATION = "normalization (left dense by convention)"
    EMBEDDING = "embedding (left dense unless the suite selects it)"
    TOKEN = "position embedding or learned token (left dense by convention)"
    PATTERN = "excluded by the suite's layer patterns"
    FIRST_LAYER = "first layer (reads the network input)"
    NOT_CALLED = "not called as a module in the forward pass"
    # left dense whatever the method: no one reduces these, so listings leave them out
    CONVENTIONAL = frozenset({BIAS, NORMALIZATION, EMBEDDING, TOKEN})

    @staticmethod
    def would_grow(before: int, after: int) -> str:
        """A layer left dense because its transform would hold more parameters than it does."""
        return f"would add parameters ({before:,} dense → {after:,} transformed)"

    @staticmethod
    def grouped(groups: int) -> str:
        """A grouped (e.g. depthwise) convolution a transform cannot rewrite."""
        return f"grouped convolution (groups={groups})"

    @staticmethod
    def unsupported(module: str, method: str) -> str:
        """A module type the method does not reduce."""
        return f"{module}: not supported by {method}"


# Tensors listed one by one in a result's `left_dense`; the rest are summed up by reason.
LISTED = 20
# A warning names this many of the largest left-dense tensors.
NAMED = 3


def _is_normalization(module: nn.Module) -> bool:
    from torch import nn

    kinds: tuple[type[nn.Module], ...] = (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
    )
    rms = getattr(nn, "RMSNorm", None)
    return isinstance(module, kinds + ((rms,) if rms is not None else ()))


@dataclass(frozen=True)
class LeftDense:
    """One tensor a method left as it was: its qualified name, size and the reason."""

    name: str
    params: int
    reason: str


class Coverage:
    """Every parameter tensor of a model, each reduced by `method` or left dense with a reason.

    Build it from the model before the method changes it; name tensors by their qualified
    parameter names (`layer1.0.conv1.weight`, `encoder.layers.0.self_attention.in_proj_weight`).
    A tensor shared by several modules is counted once, under its first name.
    """

    def __init__(self, model: nn.Module, method: str) -> None:
        self.method = method
        self._size: dict[str, int] = {}
        self._default: dict[str, str] = {}
        self._alias: dict[str, str] = {}
        seen: dict[int, str] = {}
        for module_name, module in model.named_modules():
            for local, param in module.named_parameters(recurse=False):
                name = f"{module_name}.{local}" if module_name else local
                first = seen.setdefault(id(param), name)
                if first != name:
                    self._alias[name] = first
                    continue
                self._size[name] = param.numel()
                self._default[name] = self._conventional(module, local)
        self._reduced: set[str] = set()
        self._dense: dict[str, str] = {}
        # False for a prediction in which some tensors count as reduced though whether they
        # will be depends on the data (a rank chosen by energy): the share is then "up to"
        self.exact = True

    def _conventional(self, module: nn.Module, local: str) -> str:
        from torch import nn

        if local == "bias" or local.endswith("_bias"):
            return Reason.BIAS
        if _is_normalization(module):
            return Reason.NORMALIZATION
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return Reason.EMBEDDING
        if ("embed" in local or "token" in local) and local not in ("weight", "bias"):
            return Reason.TOKEN  # a model's own pos_embedding, class_token, mask_token
        return Reason.unsupported(f"{type(module).__name__}.{local}", self.method)

    def _key(self, name: str) -> str:
        name = self._alias.get(name, name)
        if name not in self._size:
            raise KeyError(f"the model has no parameter {name!r}")
        return name

    @property
    def tensors(self) -> dict[str, int]:
        """Every parameter tensor's qualified name and size, in model order."""
        return dict(self._size)

    @property
    def total(self) -> int:
        """Parameters of the model (each shared tensor once)."""
        return sum(self._size.values())

    def reduce(self, *names: str) -> None:
        """Mark tensors as reduced by the method."""
        for name in names:
            key = self._key(name)
            self._dense.pop(key, None)
            self._reduced.add(key)

    def leave(self, name: str, reason: str) -> None:
        """Mark a tensor as left dense, for `reason` (e.g. `Reason.PATTERN`)."""
        key = self._key(name)
        self._reduced.discard(key)
        self._dense[key] = reason

    def leave_module(self, module_name: str, reason: str, biases: bool = False) -> None:
        """Leave a module's own weight tensors dense (its biases too when `biases`)."""
        prefix = f"{module_name}." if module_name else ""
        for name in self._size:
            local = name[len(prefix) :]
            if not name.startswith(prefix) or "." in local:
                continue
            if biases or self._default[name] != Reason.BIAS:
                self.leave(name, reason)

    def reason(self, name: str) -> str | None:
        """Why a tensor stays dense (None when the method reduced it)."""
        key = self._key(name)
        if key in self._reduced:
            return None
        return self._dense.get(key, self._default[key])

    @property
    def reduced(self) -> int:
        """Parameters in the tensors the method reduced (before reduction)."""
        return sum(self._size[name] for name in self._reduced)

    @property
    def fraction(self) -> float:
        """Share of the model's parameters in tensors the method reduced."""
        total = self.total
        return self.reduced / total if total else 0.0

    def left_dense(self) -> list[LeftDense]:
        """Every tensor left dense, the largest first (model order among equals)."""
        rows = [
            LeftDense(name, size, self.reason(name) or "")
            for name, size in self._size.items()
            if name not in self._reduced
        ]
        return sorted(rows, key=lambda row: -row.params)

    def by_reason(self) -> dict[str, tuple[int, int]]:
        """Reason → (tensors, parameters) left dense for it, the most parameters first."""
        totals: dict[str, tuple[int, int]] = {}
        for row in self.left_dense():
            count, params = totals.get(row.reason, (0, 0))
            totals[row.reason] = (count + 1, params + row.params)
        return dict(sorted(totals.items(), key=lambda item: -item[1][1]))

    def unexplained(self, conventional: bool = False) -> list[LeftDense]:
        """Left-dense tensors beyond the conventional ones and the suite's own patterns (all of
        them with `conventional`).

        These are what a user may not expect: a module type the method does not support, a
        layer whose transform would grow it, a grouped convolution, and so on.
        """
        routine = {*Reason.CONVENTIONAL, Reason.PATTERN}
        return [row for row in self.left_dense() if conventional or row.reason not in routine]

    def columns(self) -> dict[str, Any]:
        """The result columns: `coverage` (share of parameters reduced) and `left_dense`.

        `left_dense` lists the `LISTED` largest left-dense tensors (name, params, reason) and,
        when there are more, one row per reason summing up the rest: bounded in size whatever
        the model.
        """
        rows = self.left_dense()
        listed: list[dict[str, Any]] = [
            {"tensor": row.name, "params": row.params, "reason": row.reason}
            for row in rows[:LISTED]
        ]
        rest: dict[str, tuple[int, int]] = {}
        for row in rows[LISTED:]:
            count, params = rest.get(row.reason, (0, 0))
            rest[row.reason] = (count + 1, params + row.params)
        for reason, (count, params) in sorted(rest.items(), key=lambda item: -item[1][1]):
            listed.append({"tensor": f"{count} more tensors", "params": params, "reason": reason})
        return {"coverage": self.fraction, "left_dense": listed}

    def unexpected_share(self) -> float:
        """Share of the parameters left dense for reasons other than the suite's patterns."""
        left = sum(row.params for row in self.left_dense() if row.reason != Reason.PATTERN)
        return left / self.total if self.total else 0.0

    def grouped(self, rows: list[LeftDense], limit: int = NAMED) -> str:
        """`rows` by reason, the most parameters first: share, reason, count, largest tensor."""
        groups: dict[str, list[LeftDense]] = {}
        for row in rows:  # "would add parameters (1 → 2)" and "(3 → 4)" are one reason
            groups.setdefault(_kind_of(row.reason), []).append(row)
        ordered = sorted(groups.items(), key=lambda item: -sum(r.params for r in item[1]))
        parts = []
        for reason, members in ordered[:limit]:
            share = sum(r.params for r in members) / self.total if self.total else 0.0
            largest = members[0]  # left_dense() lists the largest first
            which = (
                f"{largest.name}"
                if len(members) == 1
                else f"{len(members)} tensors, the largest {largest.name} ({largest.params:,})"
            )
            parts.append(f"{share:.1%} {reason}: {which}")
        if len(ordered) > limit:
            more = len(ordered) - limit
            parts.append(f"… {more} more reason{'s' if more > 1 else ''}")
        return "; ".join(parts)

    def summary(self, limit: int = NAMED) -> str:
        """One line: the share reduced, then what stayed dense beyond convention, by reason."""
        share = f"{'' if self.exact else 'up to '}{self.fraction:.1%}"
        text = f"{self.method} reduces {share} of the model's parameters"
        odd = self.unexplained()
        if odd:
            text += f"; left dense: {self.grouped(odd, limit)}"
        return text


def _kind_of(reason: str) -> str:
    """A reason without its numbers: `grouped convolution (groups=8)` → `grouped convolution`."""
    reason = re.sub(r"\s*\([^()]*\d[^()]*\)", "", reason)
    return re.sub(r"\d[\d,.]*", "N", reason)


def coverage_of(
    model: nn.Module,
    method: str,
    reduced: Iterable[str] = (),
    dense: Mapping[str, str] | None = None,
) -> Coverage:
    """A `Coverage` of `model` with `reduced` tensors and `dense` tensor → reason filled in."""
    account = Coverage(model, method)
    account.reduce(*reduced)
    for name, reason in (dense or {}).items():
        account.leave(name, reason)
    return account
