"""One module per `pcnbench` command, each a `cmd_<name>(args) -> exit code` (see `parser`)."""
