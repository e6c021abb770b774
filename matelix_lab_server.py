"""Seed-compatible start command: `python matelix_lab_server.py` starts the same server as `matelix serve`."""

import sys

from matelix.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
