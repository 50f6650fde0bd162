"""What a run ran on: versions, devices, CPU, and the git state of the working tree."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pcnbench


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(path: str | Path = ".") -> dict[str, Any]:
    """Commit and dirty flag of the git work tree containing `path` (None outside git)."""
    cwd = Path(path).resolve()
    if not cwd.is_dir():
        cwd = cwd.parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"git_commit": commit, "git_dirty": bool(status)}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    """The NVIDIA driver version through NVML, or None where there is no NVIDIA driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        return None
    return version.decode() if isinstance(version, bytes) else str(version)


def _mps_running() -> bool:
    """Whether a CUDA MPS control daemon seems to run (its pipe directory exists)."""
    pipes = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return Path(pipes, "control").exists()


def environment(suite_file: str | Path | None = None) -> dict[str, Any]:
    """A JSON-able description of the software and hardware a run uses."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    try:  # read, not imported: importing torchvision costs over a second
        torchvision = version("torchvision")
    except PackageNotFoundError:
        torchvision = None
    env: dict[str, Any] = {
        "pcnbench": pcnbench.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia_driver": nvidia_driver(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # TF32 as PyTorch allows it when the run starts; each cell then sets it for its
        # recipe.precision (fp32 keeps these defaults, tf32 allows both)
        "tf32_matmul_default": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn_default": torch.backends.cudnn.allow_tf32,
        # cells packed on one GPU run kernels concurrently only under the CUDA MPS daemon
        "cuda_mps": _mps_running(),
    }
    env.update(git_state(Path(suite_file).parent if suite_file else "."))
    return env
