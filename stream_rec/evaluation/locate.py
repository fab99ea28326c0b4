"""Where the shared datasets live on this machine (they are never shipped in the project)."""

from __future__ import annotations

import os
from pathlib import Path


def dataset_path(name: str) -> Path | None:
    """The folder of dataset ``name`` (e.g. "ml-latest-small"), or None if not here.

    Looks in $STREAM_REC_DATA_DIR, then ../shared/data next to the checkout, then
    /work/shared/data.
    """
    roots = []
    configured = os.environ.get("STREAM_REC_DATA_DIR")
    if configured:
        roots.append(Path(configured))
    checkout = Path(__file__).resolve().parents[2]
    roots += [checkout.parent / "shared" / "data", Path("/work/shared/data")]
    for root in roots:
        if (root / name).is_dir():
            return root / name
    return None
