"""A local single-node Apache Kafka broker (KRaft, combined broker+controller) for development.

Kafka's jars come from Maven Central through Maven (no Docker, no tarball download) and are
cached per version; the broker runs detached as ``java kafka.Kafka server.properties``.

Layout and defaults:

* jar cache: ``$ORCHESTRAL_BROKER_CACHE/kafka-<version>/libs`` (root defaults to
  ``$XDG_CACHE_HOME/orchestral-stream``, else ``~/.cache/orchestral-stream``).
* data dir (one per broker): ``--data-dir``, else ``$ORCHESTRAL_BROKER_DATA`` used as is, else
  ``$XDG_STATE_HOME/orchestral-stream/broker-<port>`` (``~/.local/state/...``). It holds
  ``server.properties``, ``broker.pid``, ``broker.json`` (version, ports, cluster id),
  ``broker.log`` (stdout/stderr of the JVM) and ``kraft-logs/`` (the Kafka log dir).
* listeners: ``PLAINTEXT://127.0.0.1:<port>`` for clients and ``CONTROLLER://127.0.0.1:<port+1>``
  for the KRaft quorum (the quickstart's 9092/9093 pair; ``start(controller_port=...)`` picks
  another); both bound to loopback only.
* optional secured listeners (``start(security=Security(...))``, or the CLI's ``--sasl-port``,
  ``--sasl-ssl-port``, ``--ssl-port``, ``--scram-user``, ``--tls-*`` flags): ``SASL_PLAINTEXT`` and
  ``SASL_SSL`` with SCRAM-SHA-512 (and SCRAM-SHA-256) users created when the storage is formatted,
  and ``SSL`` with a PEM certificate and key (optionally requiring client certificates signed by a
  given CA). The PLAINTEXT listener stays: the readiness probe and inter-broker traffic use it.
* needs ``mvn`` and a Java 17+ ``java`` (``$JAVA_HOME`` first, else PATH); Kafka 4 requires 17.

``status``/``stop`` find a broker by its data dir, so pass the same ``data_dir`` (or port, for the
default dir) that was given to ``start``.

CLI: ``python -m devtools.broker start|stop|status [--port N] [--data-dir D] [--version V]
[--clean]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Kafka 4.4.0 (the newest on Maven Central) passes everything we need with aiokafka 0.14.0 (the
# newest; faust-streaming 0.15.3 allows any aiokafka>=0.10): admin topic creation,
# produce/consume, group commits, and exactly-once (transactional producer,
# send_offsets_to_transaction, read_committed consumer, a faust processing_guarantee=
# "exactly_once" worker). KIP-896 did drop old protocol versions in 4.0, but 4.x still serves
# v0 of the transaction APIs aiokafka speaks (no KIP-447), and aiokafka >= 0.13 negotiates
# versions for the rest. aiokafka < 0.13 does not: faust then sends CreateTopics v1 and 4.x
# closes the connection ("UnsupportedVersionException: Received request for api with key 19
# (CreateTopics) and unsupported version 1"), so 4.x needs aiokafka >= 0.13; 3.9.2 works with
# older aiokafka too (pass version="3.9.2").
KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
DEFAULT_PORT = 9092
HOST = "127.0.0.1"  # loopback only: a dev broker must never be reachable from the network
NODE_ID = 1

# A modest heap: a dev broker with a handful of topics is happy with far less than Kafka's 1 GiB.
JVM_OPTS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# Pinned so the result does not depend on which plugin version the local Maven defaults to.
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MAVEN_TIMEOUT = 900.0  # a cold download is ~45 jars / 45 MB; generous for slow mirrors

_PID_FILE = "broker.pid"
_STATE_FILE = "broker.json"
_LOG_FILE = "broker.log"
_PROPS_FILE = "server.properties"
_LOCK_FILE = ".broker.lock"
_KAFKA_LOG_DIR = "kraft-logs"
_LOG4J1_FILE = "log4j.properties"
_LOG4J2_FILE = "log4j2.properties"
_TLS_KEYSTORE_FILE = "tls-keystore.pem"  # the broker's key + certificate chain (Kafka's PEM store)
# Everything start() may create; wipe() refuses to delete a data dir holding anything else.
_OWN_NAMES = frozenset(
    {
        _PID_FILE,
        _STATE_FILE,
        _LOG_FILE,
        _LOG_FILE + ".1",
        _PROPS_FILE,
        _LOCK_FILE,
        _KAFKA_LOG_DIR,
        _LOG4J1_FILE,
        _LOG4J2_FILE,
        _TLS_KEYSTORE_FILE,
    }
)

# Popen handles of brokers started by this process, kept so exited children get reaped (a
# zombie still "exists" for kill(pid, 0)) and Popen.__del__ does not warn mid-run.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The broker could not be provisioned, started, stopped or reached."""


@dataclass(frozen=True)
class BrokerInfo:
    """A running broker, as returned by :func:`start`."""

    port: int
    controller_port: int
    pid: int
    version: str
    cluster_id: str
    data_dir: Path
    log_path: Path
    already_running: bool
    # Secured client listeners by security protocol (e.g. {"SASL_SSL": 39100}); PLAINTEXT is port.
    listeners: Mapping[str, int] = field(default_factory=dict)

    def address(self, protocol: str = "PLAINTEXT") -> str:
        """``host:port`` of the listener speaking ``protocol``."""
        port = self.port if protocol == "PLAINTEXT" else self.listeners.get(protocol)
        if port is None:
            raise BrokerError(f"this broker has no {protocol} listener")
        return f"{HOST}:{port}"

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class BrokerStatus:
    """What :func:`status` found in a data dir; ``ready`` means it answered a metadata request."""

    running: bool
    port: int
    data_dir: Path
    log_path: Path
    pid: int | None = None
    version: str | None = None
    controller_port: int | None = None
    ready: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


ScramMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]
_SCRAM_MECHANISMS: tuple[ScramMechanism, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256")


@dataclass(frozen=True)
class Security:
    """Secured client listeners, next to the PLAINTEXT one.

    ``scram_users`` (name -> password) are created for both SCRAM mechanisms when the storage is
    first formatted (KRaft), so a data dir keeps the users it was formatted with. The TLS
    listeners (SASL_SSL, SSL) need ``tls_cert`` (PEM certificate chain) and ``tls_key`` (its
    unencrypted PKCS#8 PEM key); ``client_ca`` (PEM) is the CA client certificates must chain to,
    and ``ssl_client_auth`` whether the SSL listener asks for one.
    """

    sasl_plaintext_port: int | None = None
    sasl_ssl_port: int | None = None
    ssl_port: int | None = None
    scram_users: Mapping[str, str] = field(default_factory=dict)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    ssl_client_auth: Literal["none", "requested", "required"] = "none"

    def listeners(self) -> dict[str, int]:
        ports = {
            "SASL_PLAINTEXT": self.sasl_plaintext_port,
            "SASL_SSL": self.sasl_ssl_port,
            "SSL": self.ssl_port,
        }
        return {protocol: port for protocol, port in ports.items() if port is not None}

    def check(self) -> None:
        """BrokerError when these settings cannot work."""
        listeners = self.listeners()
        if ("SASL_SSL" in listeners or "SSL" in listeners) and not (self.tls_cert and self.tls_key):
            raise BrokerError("the SASL_SSL and SSL listeners need a TLS certificate and key")
        if self.ssl_client_auth != "none" and not self.client_ca:
            raise BrokerError("client authentication on the SSL listener needs a client CA")
        for path in (self.tls_cert, self.tls_key, self.client_ca):
            if path is not None and not Path(path).is_file():
                raise BrokerError(f"no such file: {path}")
        for name, password in self.scram_users.items():
            # StorageTool's --add-scram syntax: [name=N,password=P]; keep it unambiguous.
            if not name or not password or any(c in name + password for c in ',[]="\\ \n'):
                raise BrokerError(
                    f"SCRAM user {name!r}: name and password must be non-empty and contain no "
                    "spaces, commas, brackets, quotes, '=' or backslashes"
                )


def security_properties(security: Security, tls_keystore: Path | None) -> dict[str, str]:
    """server.properties entries for the secured listeners (merged by :func:`broker_properties`)."""
    props: dict[str, str] = {}
    listeners = security.listeners()
    if any(p.startswith("SASL_") for p in listeners):
        props["sasl.enabled.mechanisms"] = ",".join(_SCRAM_MECHANISMS)
        for protocol in (p for p in listeners if p.startswith("SASL_")):
            for mechanism in _SCRAM_MECHANISMS:
                # Server side of SCRAM: no credentials here (users live in the cluster metadata).
                key = f"listener.name.{protocol.lower()}.{mechanism.lower()}.sasl.jaas.config"
                props[key] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    if tls_keystore is not None:
        props["ssl.keystore.type"] = "PEM"
        props["ssl.keystore.location"] = str(tls_keystore)
        props["ssl.endpoint.identification.algorithm"] = "https"
    if security.client_ca is not None:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(Path(security.client_ca).resolve())
    if "SSL" in listeners:
        props["listener.name.ssl.ssl.client.auth"] = security.ssl_client_auth
    return props


def _scram_args(security: Security | None) -> list[str]:
    args: list[str] = []
    for name, password in security.scram_users.items() if security else ():
        for mechanism in _SCRAM_MECHANISMS:
            args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return args


@dataclass(frozen=True)
class _Paths:
    data_dir: Path

    @property
    def pid(self) -> Path:
        return self.data_dir / _PID_FILE

    @property
    def state(self) -> Path:
        return self.data_dir / _STATE_FILE

    @property
    def log(self) -> Path:
        return self.data_dir / _LOG_FILE

    @property
    def props(self) -> Path:
        return self.data_dir / _PROPS_FILE

    @property
    def lock(self) -> Path:
        return self.data_dir / _LOCK_FILE

    @property
    def kafka_logs(self) -> Path:
        return self.data_dir / _KAFKA_LOG_DIR


# --------------------------------------------------------------------------- locations


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of Kafka ``version`` are cached."""
    root = os.environ.get("ORCHESTRAL_BROKER_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "orchestral-stream"
    return base / f"kafka-{version}"


def default_data_dir(port: int = DEFAULT_PORT) -> Path:
    """The data dir used when none is given: env override, else one per port under XDG state."""
    override = os.environ.get("ORCHESTRAL_BROKER_DATA")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "orchestral-stream" / f"broker-{port}"


def _paths(port: int, data_dir: Path | str | None) -> _Paths:
    chosen = Path(data_dir).expanduser() if data_dir is not None else default_data_dir(port)
    return _Paths(chosen.resolve())


# --------------------------------------------------------------------------- provisioning


def _major(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        raise BrokerError(f"not a Kafka version: {version!r}") from None


def _extra_artifacts(version: str) -> list[tuple[str, str, str]]:
    """Runtime jars the kafka_2.13 pom leaves out but the distribution ships.

    The pom has slf4j-api but no SLF4J binding, so without these every log line is dropped
    (SLF4J's NOP logger) and a failed start leaves nothing to read.
    """
    if _major(version) >= 4:
        # Kafka 4 logs through log4j2 (log4j-core is already a dependency). 2.25.5 is Kafka
        # 4.4.0's log4j2; for older 4.x Maven aligns api/core to it too (checked with 4.0.0).
        return [("org.apache.logging.log4j", "log4j-slf4j-impl", "2.25.5")]
    return [("ch.qos.reload4j", "reload4j", "1.2.25"), ("org.slf4j", "slf4j-reload4j", "1.7.36")]


def _pom(version: str) -> str:
    artifacts = [("org.apache.kafka", f"kafka_{SCALA_VERSION}", version)]
    artifacts += _extra_artifacts(version)
    deps = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in artifacts
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>orchestral-stream.local</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def provision(version: str = KAFKA_VERSION) -> Path:
    """Fetch Kafka ``version`` and its runtime dependencies via Maven; return the jar directory.

    Cached: a second call only checks a marker file.
    """
    home = cache_dir(version)
    libs, marker = home / "libs", home / ".complete"
    if marker.is_file():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock"):  # two concurrent first starts must not interleave downloads
        if marker.is_file():
            return libs
        mvn = _require_tool("mvn", "Maven (mvn) is needed to fetch Kafka's jars")
        pom = home / "pom.xml"
        pom.write_text(_pom(version), encoding="utf-8")
        shutil.rmtree(libs, ignore_errors=True)  # drop a half-finished earlier attempt
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ]
        output = _run(cmd, _MAVEN_TIMEOUT, f"Maven could not fetch Kafka {version}")
        if not (libs / f"kafka_{SCALA_VERSION}-{version}.jar").is_file():
            raise BrokerError(f"Maven ran but no Kafka {version} jar arrived in {libs}:\n{output}")
        marker.write_text(f"{version}\n", encoding="utf-8")
    return libs


def _require_tool(name: str, why: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BrokerError(f"{name!r} not found on PATH: {why}")
    return found


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require_tool("java", "Kafka needs a Java 17+ runtime")


def _run(cmd: Sequence[str], timeout: float, failure: str) -> str:
    """Run a short-lived helper command; return its output or raise with the output's tail."""
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BrokerError(f"{failure}: no result within {timeout:.0f}s") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BrokerError(f"{failure} (exit {proc.returncode}):\n{_tail_text(output)}")
    return output


# --------------------------------------------------------------------------- configuration


def broker_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    overrides: Mapping[str, str] | None = None,
    security: Security | None = None,
    tls_keystore: Path | None = None,
) -> dict[str, str]:
    """The broker's ``server.properties`` as a dict; ``overrides`` win over every default.

    ``security`` adds its listeners (SASL_PLAINTEXT, SASL_SSL, SSL) next to PLAINTEXT;
    ``tls_keystore`` is the PEM file (key + certificate chain) the TLS listeners serve.
    """
    extra = security.listeners() if security else {}
    client_listeners = {"PLAINTEXT": port, **extra}
    advertised = ",".join(f"{name}://{HOST}:{p}" for name, p in client_listeners.items())
    protocol_map = ",".join(f"{name}:{name}" for name in client_listeners)
    props = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{HOST}:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listeners": f"{advertised},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": advertised,
        "listener.security.protocol.map": f"{protocol_map},CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        # One node: every internal topic must make do with a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Fewer internal partitions than Kafka's 50: the first group join / transaction is
        # quicker on a cold dev broker, and 8 still exercises partition assignment.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        "num.partitions": "8",
        "group.initial.rebalance.delay.ms": "0",  # consumers in tests join without a 3 s pause
        "auto.create.topics.enable": "false",  # topics are created deliberately, as in prod
        # Dev retention: a day or 256 MiB per partition, in 64 MiB segments.
        "log.retention.hours": "24",
        "log.retention.bytes": str(256 * 1024 * 1024),
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.retention.check.interval.ms": "60000",
    }
    if security is not None:
        props.update(security_properties(security, tls_keystore))
    props.update(overrides or {})
    return props


def render_properties(props: Mapping[str, str]) -> str:
    # Only backslashes need escaping in a .properties value (':' and '=' are literal there).
    return "".join(f"{key}={value.replace(chr(92), chr(92) * 2)}\n" for key, value in props.items())


_LOG4J1 = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""

_LOG4J2 = """status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


def _logging_flags(paths: _Paths, version: str) -> list[str]:
    """Write the log config the JVM needs and return the flag pointing at it.

    Without one, log4j prints only a warning and Kafka's own lines are lost.
    """
    if _major(version) >= 4:
        config = paths.data_dir / _LOG4J2_FILE
        config.write_text(_LOG4J2, encoding="utf-8")
        return [f"-Dlog4j2.configurationFile={config}"]
    config = paths.data_dir / _LOG4J1_FILE
    config.write_text(_LOG4J1, encoding="utf-8")
    return [f"-Dlog4j.configuration={config.as_uri()}"]


def _new_cluster_id() -> str:
    # Kafka's Uuid.randomUuid(): 16 random bytes, URL-safe base64 without padding, and never
    # starting with '-' (it would read as a command-line flag).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _read_cluster_id(log_dir: Path) -> str | None:
    meta = log_dir / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text(encoding="utf-8").splitlines():
        if line.startswith("cluster.id="):
            return line.partition("=")[2].strip()
    return None


def _format_storage(
    java: str,
    classpath: str,
    paths: _Paths,
    log_flags: list[str],
    extra_args: Sequence[str] = (),
) -> str:
    """Format the KRaft log dir once (meta.properties marks it); return the cluster id.

    ``extra_args`` go to StorageTool (e.g. ``--add-scram``); they only matter on that first run.
    """
    existing = _read_cluster_id(paths.kafka_logs)
    if existing:
        return existing
    cluster_id = _new_cluster_id()
    cmd = [java, "-Xmx256m", *log_flags, "-cp", classpath, "kafka.tools.StorageTool", "format"]
    cmd += ["--cluster-id", cluster_id, "--config", str(paths.props), "--ignore-formatted"]
    cmd += extra_args
    _run(cmd, 120.0, f"formatting KRaft storage in {paths.kafka_logs} failed")
    found = _read_cluster_id(paths.kafka_logs)
    if not found:
        raise BrokerError(f"StorageTool ran but wrote no meta.properties in {paths.kafka_logs}")
    return found


# --------------------------------------------------------------------------- processes


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise start/stop/wipe on one data dir (or one cache dir) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None  # poll() reaps it, so it can't linger as a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        pass
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout or None


def _is_our_broker(pid: int, paths: _Paths) -> bool:
    """Guard against a recycled pid: the process must be kafka.Kafka on our properties file."""
    if not _alive(pid):
        return False
    cmdline = _cmdline(pid)
    if cmdline is None:
        return True  # can't tell; a live pid from our own pid file is the best evidence left
    return "kafka.Kafka" in cmdline and str(paths.props) in cmdline


def _read_pid(paths: _Paths) -> int | None:
    try:
        return int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None


def _running_pid(paths: _Paths) -> int | None:
    pid = _read_pid(paths)
    if pid is not None and _is_our_broker(pid, paths):
        return pid
    return None


def _read_state(paths: _Paths) -> dict[str, object]:
    try:
        state = json.loads(paths.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _state_int(state: Mapping[str, object], key: str) -> int | None:
    value = state.get(key)
    return value if isinstance(value, int) else None


def _state_str(state: Mapping[str, object], key: str) -> str | None:
    value = state.get(key)
    return value if isinstance(value, str) else None


def _launch(java: str, classpath: str, paths: _Paths, log_flags: list[str]) -> int:
    if paths.log.exists():  # keep the previous run's log for post-mortems, one generation
        paths.log.replace(paths.data_dir / (_LOG_FILE + ".1"))
    cmd = [java, *JVM_OPTS, *log_flags, "-cp", classpath, "kafka.Kafka", str(paths.props)]
    with paths.log.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.data_dir,  # JVM crash files (hs_err_pid*.log) land with the rest
            start_new_session=True,  # survives the caller's exit and its terminal's Ctrl-C
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        # We made the broker a session (and group) leader, so signal the whole group.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    _CHILDREN.pop(pid, None)
    return True


def _terminate(pid: int, timeout: float) -> None:
    _signal(pid, signal.SIGTERM)  # Kafka flushes and closes its logs cleanly on SIGTERM
    if _wait_exit(pid, timeout):
        return
    _signal(pid, signal.SIGKILL)
    if not _wait_exit(pid, 10.0):
        raise BrokerError(f"Kafka broker pid {pid} survived SIGKILL")


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _log_tail(paths: _Paths, lines: int = 40) -> str:
    try:
        text = paths.log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no broker log)"
    return _tail_text(text, lines) or "(broker log is empty)"


# --------------------------------------------------------------------------- Kafka protocol probe


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        size = self.int16()
        if size < 0:
            return None
        raw = self._data[self._pos : self._pos + size]
        self._pos += size
        return raw.decode("utf-8")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError("connection closed by peer")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> _Reader:
    client_id = b"orchestral-stream-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    reader = _Reader(_recv_exact(sock, size))
    if reader.int32() != corr:
        raise ValueError("response correlation id does not match the request")
    return reader


_API_VERSIONS, _METADATA = 18, 3


def probe_metadata(port: int, timeout: float = 2.0) -> tuple[str | None, list[int]]:
    """Ask the Kafka broker on ``127.0.0.1:port`` for cluster metadata.

    Returns ``(cluster_id, ports of the advertised brokers)``. A raw ApiVersions request picks a
    Metadata version both sides speak (v4..v8: non-flexible, same broker layout), so this
    works against any Kafka from 1.0 to 4.x without a client library. Raises ``OSError`` or
    ``ValueError`` when nothing Kafka-like answers.
    """
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        reader = _request(sock, _API_VERSIONS, 0, 1, b"")
        if reader.int16() != 0:
            raise ValueError("ApiVersions request refused")
        ranges = {}
        for _ in range(reader.int32()):
            key, low, high = reader.int16(), reader.int16(), reader.int16()
            ranges[key] = (low, high)
        low, high = ranges.get(_METADATA, (0, -1))
        version = min(high, 8)
        if version < max(low, 4):
            raise ValueError(f"broker speaks Metadata v{low}..v{high}, probe needs v4..v8")
        # topics: empty array (not null = all topics); allow_auto_topic_creation: false;
        # v8 adds two include_*_authorized_operations flags.
        body = struct.pack(">ib", 0, 0) + (b"\0\0" if version >= 8 else b"")
        reader = _request(sock, _METADATA, version, 2, body)
        reader.int32()  # throttle_time_ms
        ports = []
        for _ in range(reader.int32()):
            reader.int32()  # node_id
            reader.string()  # host
            ports.append(reader.int32())
            reader.string()  # rack
        return reader.string(), ports


def _answers(port: int, cluster_id: str | None, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether our broker (same cluster id, itself registered) serves metadata on ``port``."""
    try:
        found_id, ports = probe_metadata(port, timeout)
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if cluster_id is not None and found_id != cluster_id:
        return False, f"answered for cluster {found_id}, expected {cluster_id}"
    if port not in ports:
        return False, "broker not registered in metadata yet"
    return True, "ready"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: ignore TIME_WAIT leftovers of a broker we just stopped; a live listener
        # (on 127.0.0.1, 0.0.0.0 or dual-stack ::) still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ensure_ports_free(port: int, controller_port: int, paths: _Paths, *extra: int) -> None:
    roles = [(port, "client"), (controller_port, "controller"), *((p, "listener") for p in extra)]
    for candidate, role in roles:
        if _port_free(candidate):
            continue
        try:
            found_id, _ = probe_metadata(candidate, timeout=1.0)
            what = f"a Kafka broker (cluster {found_id}) not started from {paths.data_dir}"
        except (OSError, ValueError, struct.error, UnicodeDecodeError):
            what = "another process"
        raise BrokerError(
            f"{role} port {HOST}:{candidate} is already in use by {what}; "
            "stop it or pick another --port"
        )


def _wait_ready(paths: _Paths, pid: int, port: int, cluster_id: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(pid):
            raise BrokerError(
                f"Kafka broker (pid {pid}) exited during startup; {paths.log} ends with:\n"
                + _log_tail(paths)
            )
        ok, reason = _answers(port, cluster_id)
        if ok:
            return
        if time.monotonic() >= deadline:
            raise BrokerError(
                f"Kafka broker on {HOST}:{port} did not answer a metadata request within "
                f"{timeout:.0f}s (last: {reason}); {paths.log} ends with:\n" + _log_tail(paths)
            )
        time.sleep(0.25)


# --------------------------------------------------------------------------- public API


def start(
    port: int = DEFAULT_PORT,
    *,
    data_dir: Path | str | None = None,
    version: str = KAFKA_VERSION,
    timeout: float = 60.0,
    controller_port: int | None = None,
    overrides: Mapping[str, str] | None = None,
    security: Security | None = None,
) -> BrokerInfo:
    """Start (or find already running) the broker for this data dir and wait until it answers.

    ``timeout`` bounds the wait for the broker to answer, not the first Maven download.
    ``controller_port`` defaults to ``port + 1``; ``overrides`` are merged into
    server.properties (see :func:`broker_properties`); ``security`` adds secured listeners.
    """
    if security is not None:
        security.check()
    paths = _paths(port, data_dir)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(paths.lock):
        running = _running_pid(paths)
        if running is not None:
            return _existing(paths, running, port, version, timeout)
        ctrl_port = controller_port if controller_port is not None else port + 1
        extra_ports = security.listeners() if security else {}
        _check_ports(port, ctrl_port, *extra_ports.values())
        _ensure_ports_free(port, ctrl_port, paths, *extra_ports.values())
        paths.pid.unlink(missing_ok=True)  # stale: its process is gone
        classpath = str(provision(version) / "*")  # the JVM expands dir/* to every jar in it
        java = _java()
        keystore = _write_tls_keystore(paths, security)
        props = broker_properties(
            port=port,
            controller_port=ctrl_port,
            log_dir=paths.kafka_logs,
            overrides=overrides,
            security=security,
            tls_keystore=keystore,
        )
        paths.props.write_text(render_properties(props), encoding="utf-8")
        log_flags = _logging_flags(paths, version)
        cluster_id = _format_storage(java, classpath, paths, log_flags, _scram_args(security))
        pid = _launch(java, classpath, paths, log_flags)
        paths.pid.write_text(f"{pid}\n", encoding="utf-8")
        state = {
            "version": version,
            "port": port,
            "controller_port": ctrl_port,
            "cluster_id": cluster_id,
            "pid": pid,
            "started_at": time.time(),
            "listeners": extra_ports,
        }
        paths.state.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        try:
            _wait_ready(paths, pid, port, cluster_id, timeout)
        except BrokerError:
            # Don't leave a half-started JVM holding the ports behind a failed start.
            if _alive(pid):
                _terminate(pid, 10.0)
            paths.pid.unlink(missing_ok=True)
            raise
    return BrokerInfo(
        port, ctrl_port, pid, version, cluster_id, paths.data_dir, paths.log, False, extra_ports
    )


def _write_tls_keystore(paths: _Paths, security: Security | None) -> Path | None:
    """Kafka's PEM keystore is one file: the private key, then the certificate chain."""
    keystore = paths.data_dir / _TLS_KEYSTORE_FILE
    if security is None or security.tls_cert is None or security.tls_key is None:
        keystore.unlink(missing_ok=True)
        return None
    key = Path(security.tls_key).read_text(encoding="ascii")
    chain = Path(security.tls_cert).read_text(encoding="ascii")
    keystore.touch(mode=0o600)
    keystore.write_text(key.rstrip("\n") + "\n" + chain, encoding="ascii")
    return keystore


def _check_ports(port: int, controller_port: int, *extra: int) -> None:
    for value in (port, controller_port, *extra):
        if not 0 < value < 65536:
            raise BrokerError(f"port out of range: {value}")
    if len({port, controller_port, *extra}) != 2 + len(extra):
        raise BrokerError("client, controller and secured listener ports must all differ")


def _existing(paths: _Paths, pid: int, port: int, version: str, timeout: float) -> BrokerInfo:
    state = _read_state(paths)
    running_version = _state_str(state, "version") or "unknown"
    if running_version != version:
        raise BrokerError(
            f"a Kafka {running_version} broker already runs from {paths.data_dir} "
            f"(pid {pid}); stop it before starting Kafka {version}"
        )
    cluster_id = _state_str(state, "cluster_id") or _read_cluster_id(paths.kafka_logs) or ""
    _wait_ready(paths, pid, port, cluster_id or None, timeout)  # it may still be starting
    ctrl_port = _state_int(state, "controller_port") or port + 1
    found = state.get("listeners")
    found = found if isinstance(found, dict) else {}
    listeners = {str(k): v for k, v in found.items() if isinstance(v, int)}
    return BrokerInfo(
        port, ctrl_port, pid, version, cluster_id, paths.data_dir, paths.log, True, listeners
    )


def stop(
    port: int = DEFAULT_PORT, data_dir: Path | str | None = None, timeout: float = 30.0
) -> int | None:
    """Stop the broker started from this data dir; return its pid, or None if none was running.

    SIGTERM first (a clean shutdown), SIGKILL after ``timeout``.
    """
    paths = _paths(port, data_dir)
    if not paths.data_dir.is_dir():
        return None
    with _locked(paths.lock):
        return _stop_locked(paths, timeout)


def _stop_locked(paths: _Paths, timeout: float) -> int | None:
    pid = _running_pid(paths)
    if pid is not None:
        _terminate(pid, timeout)
    paths.pid.unlink(missing_ok=True)
    return pid


def status(port: int = DEFAULT_PORT, data_dir: Path | str | None = None) -> BrokerStatus:
    """Whether the broker of this data dir runs, and whether it answers on its port."""
    paths = _paths(port, data_dir)
    state = _read_state(paths)
    pid = _running_pid(paths)
    ready = False
    if pid is not None:
        ready, _ = _answers(port, _state_str(state, "cluster_id"), timeout=1.0)
    return BrokerStatus(
        running=pid is not None,
        port=port,
        data_dir=paths.data_dir,
        log_path=paths.log,
        pid=pid,
        version=_state_str(state, "version"),
        controller_port=_state_int(state, "controller_port"),
        ready=ready,
    )


def wipe(port: int = DEFAULT_PORT, data_dir: Path | str | None = None) -> Path:
    """Stop the broker of this data dir if it runs, then delete its data (topics, offsets, logs).

    Refuses a directory holding files the broker did not create, so a mistyped ``--data-dir``
    can't erase something else.
    """
    paths = _paths(port, data_dir)
    if not paths.data_dir.is_dir():
        return paths.data_dir
    with _locked(paths.lock):
        _stop_locked(paths, 30.0)
        foreign = sorted(
            entry.name
            for entry in paths.data_dir.iterdir()
            if entry.name not in _OWN_NAMES and not entry.name.startswith("hs_err_pid")
        )
        if foreign:
            raise BrokerError(
                f"refusing to wipe {paths.data_dir}: it holds files a broker did not create "
                f"({', '.join(foreign[:5])})"
            )
        for entry in paths.data_dir.iterdir():
            if entry.name == _LOCK_FILE:
                continue  # we hold it; removing it would let another process lock a new one
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return paths.data_dir


# --------------------------------------------------------------------------- CLI


def _describe(st: BrokerStatus) -> str:
    if not st.running:
        return f"Kafka broker on {HOST}:{st.port} is not running (data dir {st.data_dir})"
    health = "answering" if st.ready else "NOT answering metadata requests"
    return (
        f"Kafka {st.version} broker on {st.bootstrap_servers} is running (pid {st.pid}, "
        f"{health}; data dir {st.data_dir}; log {st.log_path})"
    )


def main(argv: Sequence[str] | None = None, prog: str = "python -m devtools.broker") -> int:
    """``start|stop|status``; exit 0 on success (``status``: 0 running, 3 not running), 1 on
    an error, with the reason on stderr."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a local single-node Kafka (KRaft) broker on 127.0.0.1.",
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="client port (default 9092)")
    parser.add_argument("--data-dir", type=Path, help="broker data dir (default: per port)")
    parser.add_argument("--version", default=KAFKA_VERSION, help=f"Kafka version ({KAFKA_VERSION})")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    parser.add_argument("--clean", action="store_true", help="start: wipe the data dir first")
    secured = parser.add_argument_group("secured listeners (start; next to PLAINTEXT)")
    secured.add_argument("--sasl-port", type=int, help="SASL_PLAINTEXT listener port (SCRAM)")
    secured.add_argument("--sasl-ssl-port", type=int, help="SASL_SSL listener port (SCRAM + TLS)")
    secured.add_argument("--ssl-port", type=int, help="SSL listener port")
    secured.add_argument(
        "--scram-user",
        action="append",
        default=[],
        metavar="NAME=PASSWORD",
        help="SCRAM-SHA-512/256 user created at first format (repeatable)",
    )
    secured.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) of the broker")
    secured.add_argument("--tls-key", type=Path, help="its unencrypted PKCS#8 PEM key")
    secured.add_argument("--tls-client-ca", type=Path, help="PEM CA for client certificates")
    secured.add_argument(
        "--ssl-client-auth", choices=("none", "requested", "required"), default="none"
    )
    args = parser.parse_args(argv)
    if args.clean and args.command != "start":
        parser.error("--clean only applies to start")
    if any(not user.partition("=")[2] for user in args.scram_user):
        parser.error("--scram-user takes NAME=PASSWORD")
    try:
        return _dispatch(args)
    except BrokerError as exc:
        print(f"broker {args.command} failed: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "start":
        if args.clean:
            wipe(args.port, args.data_dir)
        began = time.monotonic()
        info = start(
            args.port,
            data_dir=args.data_dir,
            version=args.version,
            timeout=args.timeout,
            security=_security_from_args(args),
        )
        how = "already running" if info.already_running else "started"
        print(
            f"Kafka {info.version} broker {how} on {info.bootstrap_servers} (pid {info.pid}, "
            f"{time.monotonic() - began:.1f}s; data dir {info.data_dir}; log {info.log_path})"
        )
        for protocol in info.listeners:
            print(f"  {protocol} listener on {info.address(protocol)}")
        return 0
    if args.command == "stop":
        pid = stop(args.port, args.data_dir, timeout=args.timeout)
        if pid is None:
            print(f"No Kafka broker was running on {HOST}:{args.port}; nothing to stop")
        else:
            print(f"Stopped Kafka broker on {HOST}:{args.port} (pid {pid})")
        return 0
    st = status(args.port, args.data_dir)
    print(_describe(st))
    return 0 if st.running else 3


def _security_from_args(args: argparse.Namespace) -> Security | None:
    if not (args.sasl_port or args.sasl_ssl_port or args.ssl_port):
        return None
    users = dict(user.partition("=")[::2] for user in args.scram_user)
    return Security(
        sasl_plaintext_port=args.sasl_port,
        sasl_ssl_port=args.sasl_ssl_port,
        ssl_port=args.ssl_port,
        scram_users=users,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.tls_client_ca,
        ssl_client_auth=args.ssl_client_auth,
    )


if __name__ == "__main__":
    sys.exit(main())
