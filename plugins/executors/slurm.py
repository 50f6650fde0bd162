"""The `slurm` executor: each cell a SLURM job (a job array where cells can share it), on submitit.

The driver submits cells with `sbatch` (through submitit), polls their state with `squeue`,
and stores each outcome as its job ends: it alone writes `results.db`, so no two processes
write SQLite over a network file system. A job runs one cell through `pcnbench.api.run_cell`
and hands its `Outcome` back as submitit's result pickle.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from pcnbench.api import (
    Cell,
    CellQueue,
    Executor,
    ExecutorEvents,
    Job,
    Outcome,
    Params,
    PcnbenchError,
    WorkerConfig,
    prepare_process,
    run_cell,
)

__all__ = ["SlurmExecutor", "SlurmOptions", "slurm_minutes"]

_INSTALL = "pip install 'pcnbench[slurm]'"
# squeue's states of a job that has not ended (it may still run, or run again)
_ACTIVE = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SUSPENDED",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
}
# ended, not by the cell's doing: the cell is left interrupted and the next run resumes it
_INTERRUPTED = {"CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "DEADLINE"}
_SQUEUE_EVERY_S = 2.0  # how often the driver asks squeue (the file system is polled faster)
_FILES_EVERY_S = 0.5  # how often it looks for results and progress files
_RESULT_GRACE_S = 5.0  # how long an ended job's result may take to appear (network file systems)
_PROGRESS_EVERY_S = 1.0  # how often a job writes its progress file
_PROGRESS = "pcnbench-progress.json"  # in the job's submitit folder
# sbatch flags submitit sets itself: `additional` must not override them
_RESERVED = {"array", "output", "error", "open_mode", "signal", "wrap", "parsable"}
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_minutes(value: int | str) -> int:
    """Minutes (rounded up) of a SLURM time limit: minutes, or "MM:SS", "HH:MM:SS", "D-HH",
    "D-HH:MM", "D-HH:MM:SS"; ValueError when it is none of these or not positive."""
    if isinstance(value, bool):
        raise ValueError(f"must be minutes or a SLURM time such as 2:00:00 (got {value!r})")
    if isinstance(value, int):
        minutes = value
    else:
        match = _TIME.match(value.strip())
        if match is None:
            raise ValueError(
                "must be minutes (a whole number) or a SLURM time such as 2:00:00 or"
                f" 1-12:00:00 (got {value!r})"
            )
        days, first, second, third = (int(g) if g else None for g in match.groups())
        if days is not None:  # D-HH[:MM[:SS]]
            seconds = ((days * 24 + first) * 60 + (second or 0)) * 60 + (third or 0)
        elif third is not None:  # HH:MM:SS
            seconds = (first * 60 + second) * 60 + third
        elif second is not None:  # MM:SS
            seconds = first * 60 + second
        else:  # MM
            seconds = first * 60
        minutes = math.ceil(seconds / 60)
    if minutes < 1:
        raise ValueError(f"must be at least a minute (got {value!r})")
    return minutes


class SlurmOptions(Params):
    """The suite's `executor.options` for `slurm` (each job runs one cell)."""

    partition: str | None = Field(None, min_length=1, description="partition (default: SLURM's)")
    time: int | str = Field(
        60,
        description="time limit of a cell's job: minutes, or a SLURM time such as 2:00:00; "
        "a job near it is requeued and its cell resumes from its checkpoint",
    )
    gpus_per_task: int | None = Field(
        None, ge=0, description="GPUs per cell (default: resources.gpus, 0 on the CPU)"
    )
    cpus_per_task: int | None = Field(
        None, ge=1, description="CPUs per cell, also its torch threads (default: resources.cpus)"
    )
    mem: int | str | None = Field(
        None, description='memory per cell: "16G", "4000M", or megabytes (default: SLURM\'s)'
    )
    array_parallelism: int = Field(256, ge=1, description="most jobs of one array running at once")
    max_timeouts: int = Field(
        3, ge=0, description="times a cell's job may reach its time limit and be requeued"
    )
    setup: list[str] = Field(
        default_factory=list,
        description="shell lines a job runs first (module load ..., source venv/bin/activate)",
    )
    additional: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="more sbatch options, as on its command line: {qos: high, account: lab}",
    )

    @field_validator("time")
    @classmethod
    def _time(cls, value: int | str) -> int | str:
        slurm_minutes(value)  # raises with the reason
        return value

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f'must be megabytes ≥ 1 or a size such as "16G" (got {value!r})')
        if isinstance(value, str) and not re.fullmatch(r"\d+[KMGT]?B?", value.strip(), re.I):
            raise ValueError(f'must be a size such as "16G" or "4000M" (got {value!r})')
        return value

    @field_validator("additional")
    @classmethod
    def _additional(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key.replace("-", "_").lower() in _RESERVED:
                raise ValueError(f"additional.{key}: pcnbench sets this sbatch option itself")
        return value


def _options_error(exc: ValidationError) -> str:
    """The first problem of `exc` in words (an unknown option with a did-you-mean)."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    known = list(SlurmOptions.model_fields)
    if err["type"] == "extra_forbidden" and len(err["loc"]) == 1:
        close = difflib.get_close_matches(str(err["loc"][0]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown option '{where}'{hint} (known: {', '.join(known)})"
    message = re.sub(r"^Value error, ", "", str(err["msg"]))
    return f"option '{where}': {message}"


class _SlurmCell:
    """What a job runs: one cell, in a fresh process on a node.

    Checkpointable for submitit: when SLURM signals that the job is preempted or near its time
    limit, submitit calls `checkpoint` and requeues the job, which runs the cell again; the cell
    resumes from its own checkpoint under `<output>/checkpoints/<cell id>/`.
    """

    def __init__(self, config: WorkerConfig, cell: Cell, max_timeouts: int) -> None:
        self.config = config
        self.cell = cell
        self.max_timeouts = max_timeouts

    def __call__(self) -> Outcome:
        """Run the cell, writing progress for the driver to read; return its outcome."""
        import submitit

        env = submitit.JobEnvironment()
        progress_file = env.paths.folder / _PROGRESS
        device = f"{prepare_process(self.config)}@{socket.gethostname()}, slurm job {env.job_id}"
        state: dict[str, Any] = {"device": device, "step": 0, "total": 0}
        _write_json(progress_file, state)
        last = [time.monotonic()]

        def progress(step: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY_S or step == total:
                last[0] = now
                state.update(step=step, total=total)
                _write_json(progress_file, state)

        outcome = run_cell(self.config, self.cell, progress)
        if outcome.status == "failed" and "UncompletedJobError" in (outcome.error or ""):
            # submitit gave up requeueing while the cell trained: the job reached its time
            # limit more than max_timeouts times. Not the cell's fault: resume it next run.
            return Outcome(
                "interrupted",
                error=f"SLURM job {env.job_id} reached its time limit"
                f" {self.max_timeouts + 1} times (executor.options: time, max_timeouts);"
                " the next run resumes this cell from its last checkpoint",
                wall_time_s=outcome.wall_time_s,
            )
        return outcome

    def checkpoint(self) -> Any:
        """Requeue the same cell (its own checkpoint holds the progress)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Write `value` to `path` atomically; progress is best effort, so errors are ignored."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(value), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a text file ("" when it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Submitted:
    """A cell's job, as the driver follows it."""

    cell_id: str
    job: Any  # submitit.slurm.slurm.SlurmJob
    started: bool = False  # events.started was called
    step: int = -1  # the last step reported
    ended: tuple[str, str, float] | None = None  # (state, reason, when seen) without a result
    missing: int = 0  # squeue calls in a row that did not list the job
    state: str = ""  # as squeue last said it


class SlurmExecutor(Executor):
    """Cells as SLURM jobs through submitit; the driver polls their state and stores outcomes.

    With trunk sharing on, the cells of one trunk group run one after another (each reuses
    what the previous cached, on the shared file system) and the groups in parallel: the
    first cell of every group goes out as one job array, and each later cell as soon as its
    group's previous cell ended (cells made ready together share an array). `--no-share`
    submits every cell at once, as one array.

    Options: see `SlurmOptions`. The output directory must be on a file system every node
    reaches at the same path (the job logs, results, checkpoints and trunk caches are there).
    """

    name = "slurm"
    Options = SlurmOptions

    def probe(self) -> str:
        """Whether submitit is importable and sbatch answers, with their versions."""
        try:
            import submitit
        except ImportError:
            return f"not installed: {_INSTALL}"
        if shutil.which("sbatch") is None:
            return f"submitit {submitit.__version__}, but no sbatch here (use a SLURM login node)"
        try:
            version = subprocess.run(
                ["sbatch", "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            version = "sbatch (version unknown)"
        return f"available: submitit {submitit.__version__}, {version}"

    def check(self, job: Job) -> None:
        """Known options, submitit installed, sbatch on PATH, whole GPUs per cell."""
        options = self._options(job)
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise PcnbenchError(
                f"executor 'slurm' needs submitit, which is not installed here: {_INSTALL}"
            ) from None
        if shutil.which("sbatch") is None:
            raise PcnbenchError(
                "executor 'slurm' needs SLURM's sbatch, which is not on PATH here: run pcnbench"
                " on a login node of the cluster"
            )
        if options.gpus_per_task is None and job.gpus is not None and job.gpus != int(job.gpus):
            raise PcnbenchError(
                f"resources.gpus: {job.gpus:g} GPUs per cell, but a SLURM job gets whole GPUs;"
                " use 1 (a GPU per cell), or set executor.options.gpus_per_task"
            )
        if job.config.device.startswith("cuda") and _gpus(job, options) == 0:
            raise PcnbenchError(
                f"device '{job.config.device}' with no GPU per cell: the jobs would ask SLURM"
                " for none; set resources.gpus or executor.options.gpus_per_task"
            )

    @staticmethod
    def _options(job: Job) -> SlurmOptions:
        try:
            return SlurmOptions.model_validate(job.options)
        except ValidationError as exc:
            raise PcnbenchError(f"executor 'slurm': {_options_error(exc)}") from None

    def _submitter(self, job: Job, options: SlurmOptions, gpus: int, cpus: int) -> Any:
        """A submitit executor for this run's jobs, logging under `<output>/slurm/<job id>/`."""
        import submitit

        folder = Path(job.config.output) / "slurm" / "%j"
        submitter = submitit.SlurmExecutor(folder=folder, max_num_timeout=options.max_timeouts)
        suite = next(iter(job.cells.values())).suite
        params: dict[str, Any] = {
            "job_name": f"pcnbench-{suite}",
            "time": slurm_minutes(options.time),
            "cpus_per_task": cpus,
            "array_parallelism": options.array_parallelism,
        }
        if options.partition:
            params["partition"] = options.partition
        if gpus:
            params["gpus_per_task"] = gpus
        if options.mem is not None:
            params["mem"] = f"{options.mem}M" if isinstance(options.mem, int) else options.mem
        if options.setup:
            params["setup"] = list(options.setup)
        if options.additional:
            params["additional_parameters"] = dict(options.additional)
        submitter.update_parameters(**params)
        return submitter

    def run(self, job: Job, events: ExecutorEvents) -> None:
        """Submit the cells as jobs; report each outcome as its job ends."""
        options = self._options(job)
        gpus = _gpus(job, options)
        cpus = options.cpus_per_task or max(1, math.ceil(job.cpus))
        device = job.config.device
        if device == "auto":  # a cell never uses a GPU its job did not ask for
            device = "cuda" if gpus > 0 else "cpu"
        config = replace(job.config, device=device, threads=job.config.threads or cpus)
        submitter = self._submitter(job, options, gpus, cpus)
        cells = CellQueue(list(job.cells), job.groups)
        active: dict[str, _Submitted] = {}  # job id → its cell
        ready: list[str] = []
        while (first := cells.next(steal=False)) is not None:
            ready.append(first)

        def submit() -> None:
            if not ready:
                return
            try:
                with submitter.batch():  # several cells: one job array
                    jobs = [
                        submitter.submit(_SlurmCell(config, job.cells[c], options.max_timeouts))
                        for c in ready
                    ]
            except Exception as exc:  # sbatch refused: a partition that does not exist, ...
                text = str(exc).strip()
                raise PcnbenchError(f"executor 'slurm': sbatch refused the jobs: {text}") from None
            for cell_id, submitted in zip(ready, jobs, strict=True):
                active[submitted.job_id] = _Submitted(cell_id, submitted)
            ready.clear()

        def finish(sub: _Submitted, outcome: Outcome) -> None:
            del active[sub.job.job_id]
            if not sub.started:
                events.started(sub.cell_id, f"slurm job {sub.job.job_id}")
            events.finished(sub.cell_id, outcome)
            sub.job.paths.folder.joinpath(_PROGRESS).unlink(missing_ok=True)
            following = cells.next(after=sub.cell_id, steal=False)
            if following is not None:
                ready.append(following)

        last_squeue = 0.0
        try:
            submit()
            while active:
                time.sleep(_FILES_EVERY_S)
                for sub in list(active.values()):
                    if sub.state == "PENDING":  # no files to look for (spare a shared FS)
                        continue
                    self._follow(sub, events)
                    outcome = _result(sub)
                    if outcome is not None:
                        finish(sub, outcome)
                if active and time.monotonic() - last_squeue >= _SQUEUE_EVERY_S:
                    last_squeue = time.monotonic()
                    states = _squeue(list(active))
                    if states is not None:
                        for sub in list(active.values()):
                            outcome = _judge(sub, states.get(sub.job.job_id))
                            if outcome is not None:
                                finish(sub, outcome)
                submit()
        except BaseException:  # Ctrl-C, or the driver stopping the run (HaltError: disk full)
            _cancel(list(active))
            raise

    @staticmethod
    def _follow(sub: _Submitted, events: ExecutorEvents) -> None:
        """Report the start and progress a job wrote to its progress file."""
        state = _read_json(sub.job.paths.folder / _PROGRESS)
        if state is None:
            return
        if not sub.started:
            sub.started = True
            events.started(sub.cell_id, str(state.get("device", "slurm")))
        step, total = int(state.get("step", 0)), int(state.get("total", 0))
        if total and step != sub.step:
            sub.step = step
            events.progress(sub.cell_id, step, total)


def _gpus(job: Job, options: SlurmOptions) -> int:
    """GPUs per cell's job: `gpus_per_task`, else `resources.gpus` (None: 0)."""
    if options.gpus_per_task is not None:
        return options.gpus_per_task
    return math.ceil(job.gpus or 0)


def _result(sub: _Submitted) -> Outcome | None:
    """The outcome in the job's result pickle (None while there is none)."""
    from submitit.core.utils import pickle_load

    path = sub.job.paths.result_pickle
    if not path.exists():
        return None
    try:
        kind, value = pickle_load(path)
    except Exception as exc:  # an unreadable result: the cell's run is lost, retry it
        return Outcome("failed", error=f"SLURM job {sub.job.job_id}: unreadable result ({exc})")
    if kind == "success" and isinstance(value, Outcome):
        return value
    text = str(value)
    if "UncompletedJobError" in text:  # submitit stopped requeueing a job out of time
        return Outcome(
            "interrupted",
            error=f"SLURM job {sub.job.job_id} reached its time limit too often (executor.options:"
            " time, max_timeouts); the next run resumes this cell from its last checkpoint",
        )
    return Outcome(
        "failed",
        error=f"SLURM job {sub.job.job_id} failed outside the cell (log:"
        f" {sub.job.paths.stderr}):\n{text.strip()}",
    )


def _judge(sub: _Submitted, seen: tuple[str, str] | None) -> Outcome | None:
    """The outcome of a job squeue says ended without a result (None: wait on)."""
    sub.state = seen[0] if seen else ""
    if seen is None:  # not listed: ended long ago, or never known to this controller
        sub.missing += 1
        if sub.missing < 3:
            return None
        seen = ("UNKNOWN", "no longer listed by squeue")
    else:
        sub.missing = 0
    state, reason = seen
    if state in _ACTIVE:
        sub.ended = None  # requeued
        return None
    if sub.ended is None:
        sub.ended = (state, reason, time.monotonic())
    if time.monotonic() - sub.ended[2] < _RESULT_GRACE_S:
        return None  # its result may still be on its way
    job_id = sub.job.job_id
    said = f"{state} ({reason})" if reason and reason != "None" else state
    if state in _INTERRUPTED:
        return Outcome(
            "interrupted",
            error=f"SLURM job {job_id} ended {said}; the next run resumes this cell from its"
            " last checkpoint",
        )
    tail = _tail(sub.job.paths.stderr)
    hint = " (give it more memory: executor.options.mem)" if state == "OUT_OF_MEMORY" else ""
    return Outcome(
        "failed",
        error=f"SLURM job {job_id} ended {said} without a result{hint}; its log"
        f" {sub.job.paths.stderr} ends:\n{tail}",
    )


def _squeue(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """Job id → (state, reason) of the listed jobs, array tasks one by one; None when squeue
    does not answer (the driver asks again later)."""
    masters = sorted({j.split("_", 1)[0] for j in job_ids})
    command = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(masters)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        # every id forgotten by the controller: none of them is listed
        return {} if "Invalid job id" in done.stderr else None
    states: dict[str, tuple[str, str]] = {}
    for line in done.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def _cancel(job_ids: list[str]) -> None:
    """scancel the jobs (best effort: the run is stopping)."""
    if not job_ids:
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)
