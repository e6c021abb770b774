"""`python -m matelix` is the same as the `matelix` command."""

from matelix.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
