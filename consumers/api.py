"""Deployed entry point of the HTTP API and live page: settings in (STREAM_REC_*), server run.

The container runs ``python consumers/api.py``; it is exactly ``stream-rec serve``.
"""

import sys

from stream_rec.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve"]))
