"""Shared fixtures: example specs, generated projects, and brokers started per test."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED_SPECS = REPO.parent / "shared" / "specs"
SHARED_SCHEMAS = REPO.parent / "shared" / "asyncapi-schemas"
REQUIRE_BROKERS = os.environ.get("ASYNCGEN_REQUIRE_BROKERS") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def broker_binary(name: str) -> str:
    """The path of a broker binary, or skip (fail when brokers are required)."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        message = f"{name} is not installed"
        if REQUIRE_BROKERS:
            pytest.fail(message + " and ASYNCGEN_REQUIRE_BROKERS=1")
        pytest.skip(message)
    return path


class Mosquitto:
    """A mosquitto of our own on a free loopback port, with a config we write."""

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None) -> None:
        self.binary = broker_binary("mosquitto")
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # As root, mosquitto would switch to its own user, who cannot enter the test's
            # private temporary folders.
            + ("user root\n" if os.geteuid() == 0 else "")
            + "max_queued_messages 0\n"
            + ("allow_anonymous true\n" if "allow_anonymous" not in self.extra_config else "")
            + f"persistence_location {self.workdir}/\n"
            + f"{self.extra_config}\n"
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(config), "-v"],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


class ServiceProcess:
    """`python -m <package>` of a generated project, its log collected in a file."""

    def __init__(self, project: Path, package: str, env: dict[str, str]) -> None:
        self.project = project
        self.package = package
        self.log = project / f"service-{time.monotonic_ns()}.log"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(project / "src"),
            "PYTHONUNBUFFERED": "1",
            "STATS_INTERVAL": "0",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", package],
            cwd=project,
            env=full_env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 20.0, count: int = 1) -> str:
        """Wait until `pattern` has appeared `count` times in the log."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if len(regex.findall(text)) >= count:
                return text
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not seen {count}x in the service log:\n{self.output()}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def project_with_handlers(output: Path, example: str, handlers: dict[str, str]) -> Path:
    """Generate examples/<example> into `output`, then replace handler modules by source."""
    result = generate(EXAMPLES / example / "asyncapi.yaml", output)
    assert result.returncode == 0, result.stderr
    packages = [p for p in (output / "src").iterdir() if p.is_dir()]
    assert len(packages) == 1, packages
    for module, source in handlers.items():
        (packages[0] / "handlers" / f"{module}.py").write_text(source)
    return output


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 (an IP SAN) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asyncgen test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server-key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def not_black_formatted(output: Path, package: str) -> list[str]:
    """Generated Python files that isort and black, run as a user would, would change.

    asyncgen runs black only where its templates cannot promise black's layout; this is
    the check that the promise holds."""
    import black
    import isort
    from black.mode import TargetVersion

    mode = black.Mode(target_versions={TargetVersion.PY311})
    changed = []
    for path in sorted(output.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        # The runtime package is the same in every project: each text is checked once
        # (with the package name when isort could tell it apart, that is when the text
        # holds it).
        key = (package if package in source else None, source)
        if key not in _FORMATTED:
            try:
                sorted_source = isort.code(source, profile="black", known_first_party=[package])
            except isort.exceptions.FileSkipComment:  # spec text says `isort: skip_file`
                sorted_source = source  # and isort, run as a user would, skips the file
            _FORMATTED[key] = black.format_str(sorted_source, mode=mode) == source
        if not _FORMATTED[key]:
            changed.append(path.relative_to(output).as_posix())
    return changed


#: Whether each text checked by `not_black_formatted` is in isort's and black's layout.
_FORMATTED: dict[tuple[str | None, str], bool] = {}


def generate(spec: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `asyncgen generate` as a user would, in a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "asyncgen", "generate", str(spec), "-o", str(output), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


class NatsServer:
    """A nats-server of our own on free loopback ports, with JetStream and optional MQTT."""

    def __init__(
        self, workdir: Path, *, mqtt: bool = False, websocket: bool = False, extra_config: str = ""
    ) -> None:
        self.binary = broker_binary("nats-server")
        self.workdir = workdir
        self.port = free_port()
        self.mqtt_port = free_port() if mqtt else None
        self.websocket_port = free_port() if websocket else None
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = [
            'server_name: "asyncgen-test"',
            f"listen: 127.0.0.1:{self.port}",
            f'jetstream {{ store_dir: "{self.workdir / "jetstream"}" }}',
        ]
        if self.mqtt_port:
            config.append(f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}")
        if self.websocket_port:
            config.append(f"websocket {{ listen: 127.0.0.1:{self.websocket_port}\n no_tls: true }}")
        config.append(self.extra_config)
        path = self.workdir / "nats.conf"
        path.write_text("\n".join(config) + "\n")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(path)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_for_port(self.port)
        for port in (self.mqtt_port, self.websocket_port):
            if port:
                wait_for_port(port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


class Listener:
    """A paho client that collects what arrives on some topics."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}"
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.client.publish(topic, payload, qos=qos).wait_for_publish(5)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {self.messages}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def read_records(path: Path, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            # Only whole lines: a handler may be writing the last one right now.
            text = path.read_text()
            lines = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"expected {count} handled messages in {path}")


def ruff_and_mypy_problems(project: Path, package: str) -> str:
    """What `ruff check` and `mypy --strict` say about a generated project; "" when clean."""
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(project)],
        capture_output=True,
        text=True,
    )
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", package],
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(project / "src")},
        cwd=project,
    )
    return "".join(
        f"{name} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        for name, result in (("ruff", ruff), ("mypy", mypy))
        if result.returncode != 0
    )
