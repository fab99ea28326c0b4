"""Deployed entry point of a trainer worker: settings in (STREAM_REC_*), loop run.

The container image runs ``python consumers/trainer.py``; it is exactly ``stream-rec run``.
"""

import sys

from stream_rec.cli import main

if __name__ == "__main__":
    sys.exit(main(["run"]))
