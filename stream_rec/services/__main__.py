"""``python -m stream_rec.services fetch-kafka``: fetch (or find) Apache Kafka's jars."""

from __future__ import annotations

import shutil
import sys

from stream_rec.services.local_kafka import KAFKA_VERSION, kafka_libs


def main(argv: list[str] | None = None) -> int:
    """``python -m stream_rec.services fetch-kafka``: fetch (or find) the Kafka jars."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["fetch-kafka"]:
        print("usage: python -m stream_rec.services fetch-kafka", file=sys.stderr)
        return 2
    if shutil.which("java") is None:
        print("no java on PATH: Apache Kafka cannot run here; the Tansu broker will be used")
        return 0
    libs = kafka_libs(fetch=True)
    found = libs or "unavailable (no mvn): the Tansu broker will be used"
    print(f"Apache Kafka {KAFKA_VERSION} jars: {found}")
    return 0


sys.exit(main())
