"""The `pcnbench` entry point: parse, dispatch to the command, map errors to exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pcnbench.cli.parser import build_parser
from pcnbench.cli.status_codes import EXIT_INTERRUPTED, EXIT_USAGE
from pcnbench.errors import PcnbenchError, PluginError, SuiteError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pcnbench` console script."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a first try with no command: the commands and what each does
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SuiteError, PluginError) as exc:
        print(f"error: {exc}" if isinstance(exc, PluginError) else str(exc), file=sys.stderr)
        return EXIT_USAGE
    except PcnbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        # the environment refused something no check foresaw: say what and where, not how
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def console() -> None:
    """The `pcnbench` console script: run `main`, then exit with its code."""
    exit_now(main(sys.argv[1:]))


def exit_now(code: int) -> None:
    """End the process with `code` without tearing its interpreter down.

    With torch loaded (and its compiler, which training imports) the teardown takes 1–2 s,
    after everything is written: the shell, a pipe (`| tee`) or CI waits for nothing. What a
    normal exit does that matters still happens: the exit handlers run (plugins' own, logging's,
    multiprocessing's removal of its temporary files), then stdout and stderr are flushed. A
    process with another non-daemon thread still running exits normally, which waits for it.
    """
    import atexit
    import contextlib
    import threading

    main_thread = threading.main_thread()
    others = [t for t in threading.enumerate() if t is not main_thread and not t.daemon]
    if any(t.is_alive() for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (`| head`): nothing more can be said
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
