"""Each (dataset, model) pair built without weights and run once, and each method asked about it.

A method may reject parameters that do not fit the model (`Method.check_model`) and says what
it will reduce of it (`Method.plan_coverage`). torch is imported only once a model is built.
"""

from __future__ import annotations

from typing import Any

from pcnbench.cells import Choice
from pcnbench.errors import ParamError, SuiteError
from pcnbench.suite.loaded import LoadedSuite
from pcnbench.suite.plugin_errors import default_note, first_line, plugin_failed
from pcnbench.yamlsrc import KeyPath

# A model with at most this many parameters is probed on the CPU: torch's meta kernels import
# its compiler stack (over a second) on the first forward; uninitialised CPU memory costs none
_CPU_PROBE_MAX_PARAMS = 50_000_000


def check_compatibility(loaded: LoadedSuite, host: Any) -> None:
    """Build every (dataset, model) pair of the matrix (weights uninitialised), one forward each."""
    source = loaded.source
    checked: set[tuple[int, int, int]] = set()
    infos: dict[int, Any] = {}
    nets: dict[tuple[int, int], Any] = {}
    for cell in loaded.cells:
        d, m, meth = cell.dataset, cell.model, cell.method
        key = (id(d), id(m))
        if key in nets:
            if (*key, id(meth)) not in checked:
                checked.add((*key, id(meth)))
                _check_method_on_model(loaded, host, meth, m, d, nets[key], infos[id(d)])
            continue
        dplugin = host.datasets.get(d.name)
        if id(d) not in infos:
            try:
                infos[id(d)] = dplugin.info(d.params)
            except ParamError as exc:
                raise source.error(
                    ("datasets", d.entry, "params", *((exc.key,) if exc.key else ())), exc.message
                ) from None
        info = infos[id(d)]
        mplugin = host.models.get(m.name)
        where: KeyPath = ("models", m.entry)
        try:
            net, out = _probe(mplugin, m.params, info)
        except ParamError as exc:
            raise source.error(
                (*where, "params", *((exc.key,) if exc.key else ())),
                f"with dataset '{d.name}' (input {tuple(info.input_shape)}): {exc.message}",
            ) from None
        except Exception as exc:
            raise source.error(
                where,
                f"model '{m.name}' does not work with dataset '{d.name}' (input "
                f"{tuple(info.input_shape)}, {info.num_classes} classes): "
                f"{type(exc).__name__}: {first_line(exc)}",
            ) from None
        if tuple(out.shape) != (2, info.num_classes):
            raise source.error(
                where,
                f"model '{m.name}' returns shape {tuple(out.shape)} for dataset '{d.name}'; "
                f"expected (batch, {info.num_classes})",
            )
        nets.clear()  # cells come model by model: keep one built model, not all of them
        nets[key] = net
        checked.add((*key, id(meth)))
        _check_method_on_model(loaded, host, meth, m, d, net, info)


def _probe(plugin: Any, params: Any, info: Any) -> tuple[Any, Any]:
    """Build the model without initialising weights, run one forward of 2 zero inputs."""
    import torch

    with torch.device("meta"):
        net = plugin.build(params, info)
    net.eval()
    small = sum(p.numel() for p in net.parameters()) <= _CPU_PROBE_MAX_PARAMS
    device = "cpu" if small else "meta"
    if small:  # only shapes matter: the values (uninitialised memory) are never read
        # (not `to_empty`: on meta tensors it goes through torch's symbolic-shape machinery)
        for module in net.modules():
            for name, value in module._parameters.items():
                if value is not None:
                    fresh = torch.empty(value.shape, dtype=value.dtype)
                    module._parameters[name] = torch.nn.Parameter(fresh, value.requires_grad)
            for name, value in module._buffers.items():
                if value is not None:
                    module._buffers[name] = torch.empty(value.shape, dtype=value.dtype)
    with torch.no_grad():
        out = net(torch.zeros(2, *info.input_shape, device=device))
    return net, out


def _check_method_on_model(
    loaded: LoadedSuite,
    host: Any,
    method: Choice,
    model: Choice,
    dataset: Choice,
    net: Any,
    info: Any,
) -> None:
    """Let the method reject parameters that do not fit this model (see Method.check_model),
    and ask it what it will reduce of the model (Method.plan_coverage)."""
    source = loaded.source
    plugin = host.methods.get(method.name)
    context = f"with model '{model.name}' on '{dataset.name}': "

    def failed(call: str, exc: Exception) -> SuiteError:
        """The error for a method whose `call` raised something other than ParamError."""
        return source.error(
            ("methods", method.entry), context + plugin_failed(host.methods, method.name, call, exc)
        )

    try:
        plugin.check_model(method.params, net)
    except ParamError as exc:
        at = method.where.get(exc.key, ("params", exc.key)) if exc.key else ()
        raise source.error(
            ("methods", method.entry, *at),
            context + exc.message + default_note(method.params, exc.key),
        ) from None
    except Exception as exc:
        raise failed("check_model", exc) from exc
    try:
        account = plugin.plan_coverage(method.params, net, tuple(info.input_shape))
    except Exception as exc:
        raise failed("plan_coverage", exc) from exc
    if account is not None:
        loaded.coverage.append((dataset, model, method, account))
