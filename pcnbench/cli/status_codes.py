"""The exit codes of `pcnbench`: 1 is for cells that ran and failed, 2 for anything else wrong."""

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
