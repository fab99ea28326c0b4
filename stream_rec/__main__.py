"""``python -m stream_rec`` is the ``stream-rec`` command."""

import sys

from stream_rec.cli import main

sys.exit(main())
