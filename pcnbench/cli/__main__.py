"""`python -m pcnbench.cli`: the `pcnbench` command."""

from pcnbench.cli.entry import console

if __name__ == "__main__":
    console()
