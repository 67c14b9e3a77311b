"""`asyncgen acl`: broker access rules from the document, tried on real brokers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import (
    EXAMPLES,
    SHARED_SPECS,
    Mosquitto,
    NatsServer,
    ServiceProcess,
    broker_binary,
    free_port,
    generate,
    project_with_handlers,
    read_records,
    wait_for_port,
)

from asyncgen import acl
from asyncgen.render.protocols import PROFILES

FLEET = """\
asyncapi: 3.0.0
info:
  title: Fleet
  version: 1.0.0
servers:
  broker:
    host: localhost
    protocol: {protocol}
channels:
  telemetry:
    address: tenants/{{tenantId}}/devices/{{deviceId}}/telemetry
    parameters:
      tenantId: {{$ref: '#/components/parameters/tenantId'}}
      deviceId: {{$ref: '#/components/parameters/deviceId'}}
    messages:
      reading: {{$ref: '#/components/messages/Reading'}}
  commands:
    address: tenants/{{tenantId}}/devices/{{deviceId}}/commands
    parameters:
      tenantId: {{$ref: '#/components/parameters/tenantId'}}
      deviceId: {{$ref: '#/components/parameters/deviceId'}}
    messages:
      command: {{$ref: '#/components/messages/Command'}}
  status:
    address: tenants/{{tenantId}}/status
    parameters:
      tenantId: {{$ref: '#/components/parameters/tenantId'}}
    messages:
      query: {{$ref: '#/components/messages/Query'}}
  statusReply:
    address: null
    messages:
      answer: {{$ref: '#/components/messages/Answer'}}
operations:
  receiveTelemetry:
    action: receive
    channel: {{$ref: '#/channels/telemetry'}}
    bindings:
      mqtt: {{qos: 1}}
      nats: {{queue: fleet-workers}}
  sendCommand:
    action: send
    channel: {{$ref: '#/channels/commands'}}
  answerStatus:
    action: receive
    channel: {{$ref: '#/channels/status'}}
    reply:
      channel: {{$ref: '#/channels/statusReply'}}
components:
  parameters:
    tenantId:
      description: The tenant; a device logs in with its tenant's user name.
      x-asyncgen-identity: username
    deviceId:
      description: The device; its MQTT client id.
      x-asyncgen-identity: clientId
  messages:
    Reading:
      payload:
        type: object
        required: [value]
        properties:
          value: {{type: number}}
    Command:
      payload:
        type: object
        properties:
          action: {{type: string}}
    Query:
      payload:
        type: object
        properties:
          detail: {{type: boolean}}
    Answer:
      payload:
        type: object
        required: [devices]
        properties:
          devices: {{type: integer}}
"""

RECORDING_HANDLER = """
import json
import os
from typing import Any


async def handle(message: Any, params: Any, context: Any) -> None:
    address = getattr(context, "topic", None) or getattr(context, "subject", None)
    record = {"topic": address, "params": params.model_dump(by_alias=True),
              "message": message.model_dump(mode="json")}
    with open(os.environ["RECORD_FILE"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
"""

ANSWERING_HANDLER = """
from typing import Any

from fleet._generated import models


async def handle(message: Any, params: Any, context: Any) -> models.AnswerPayload:
    return models.AnswerPayload(devices=3)
"""


def run_acl(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncgen", "acl", str(spec), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def fleet_project(tmp_path: Path, protocol: str) -> tuple[Path, Path]:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET.format(protocol=protocol))
    project = tmp_path / "fleet"
    result = generate(spec, project)
    assert result.returncode == 0, result.stderr
    handlers = project / "src" / "fleet" / "handlers"
    (handlers / "receive_telemetry.py").write_text(RECORDING_HANDLER)
    (handlers / "answer_status.py").write_text(ANSWERING_HANDLER)
    return spec, project


# -- the rules themselves -----------------------------------------------------------------


def test_mosquitto_rules_bind_identity_parameters_and_nothing_more(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET.format(protocol="mqtt"))
    result = run_acl(spec, "--broker", "mosquitto")
    assert result.returncode == 0, result.stderr
    rules = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user fleet",
        "topic read tenants/+/devices/+/telemetry",
        "topic write tenants/+/devices/+/commands",
        "topic read tenants/+/status",
        "topic write fleet/dead-letter",
        "topic readwrite fleet/dead-letter/#",
        "pattern write tenants/%u/devices/%c/telemetry",
        "pattern read tenants/%u/devices/%c/commands",
        "pattern write tenants/%u/status",
    ]
    # The reply goes to the topic each request names: said, not granted.
    assert "response topic" in result.stderr


def test_nats_rules_give_each_user_its_own_subjects(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET.format(protocol="nats"))
    result = run_acl(spec, "--broker", "nats", "--user", "acme:d-42", "--service-user", "svc")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "password: $NATS_PASSWORD_SVC" in text
    assert "password: $NATS_PASSWORD_ACME" in text
    assert '"tenants.acme.devices.d-42.telemetry"' in text
    assert '"tenants.acme.devices.d-42.commands"' in text
    assert "globex" not in text and '"tenants.*.devices.*.telemetry"' in text


def test_a_wrong_identity_value_is_a_located_error(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET.format(protocol="mqtt").replace("identity: clientId", "identity: ip"))
    result = run_acl(spec, "--broker", "mosquitto")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "/components/parameters/deviceId/x-asyncgen-identity" in result.stderr
    assert "fleet.yaml:" in result.stderr


def test_user_names_that_are_no_subject_token_are_refused(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(FLEET.format(protocol="nats"))
    result = run_acl(spec, "--broker", "nats", "--user", "a.b")
    assert result.returncode == 2
    assert "'a.b' is not a user name" in result.stderr


def test_the_service_default_dead_letter_address_is_the_one_the_rules_grant(
    tmp_path: Path,
) -> None:
    for protocol, setting in (
        ("mqtt", "mqtt_dead_letter_topic"),
        ("nats", "nats_dead_letter_subject"),
    ):
        (tmp_path / protocol).mkdir()
        _, project = fleet_project(tmp_path / protocol, protocol)
        settings = (project / "src" / "fleet" / "_generated" / "settings.py").read_text()
        expected = PROFILES[protocol].dead_letter_address("fleet")
        assert f'{setting}: str = "{expected}"' in settings


# -- on real brokers ----------------------------------------------------------------------


def _password_file(path: Path, users: dict[str, str]) -> Path:
    for index, (user, password) in enumerate(users.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(
            ["mosquitto_passwd", "-b", *create, str(path), user, password],
            check=True,
            capture_output=True,
        )
    return path


class Device:
    """An MQTT 3.1.1 client that logs in as a tenant and records what it receives."""

    def __init__(
        self, port: int, user: str, client_id: str, subscriptions: tuple[str, ...] = ()
    ) -> None:
        self.messages: list[str] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set(user, "secret")
        self.client.on_message = lambda client, userdata, message: self.messages.append(
            message.topic
        )
        self.connected = threading.Event()
        self.subscriptions = subscriptions
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(5), f"{user}/{client_id} did not connect"

    def _on_connect(self, *args: Any) -> None:
        # mosquitto may drop a client whose publish it refused: subscribe on each connect.
        for topic in self.subscriptions:
            self.client.subscribe(topic, qos=1)
        self.connected.set()

    def publish(self, topic: str, payload: dict[str, Any], qos: int = 1) -> None:
        self.client.publish(topic, json.dumps(payload), qos=qos).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def attempt(broker: Mosquitto, user: str, client_id: str, topic: str) -> None:
    """Publish once from a client of its own, which mosquitto may drop if it refuses."""
    client = Device(broker.port, user, client_id)
    try:
        client.publish(topic, {"value": -1}, qos=0)
        time.sleep(0.1)
    except RuntimeError:
        pass  # the connection was lost: refused
    finally:
        client.close()


def denied(broker: Mosquitto, client_id: str, topic: str) -> bool:
    """Whether mosquitto's log says it refused `client_id`'s publish to `topic`.

    The refused publishes are sent at QoS 0: mosquitto 2.0.11 answers a refused QoS 1
    publish of an MQTT 3.1.1 client with a PUBACK that carries a reason code, which 3.1.1
    does not have, and the client drops the connection."""
    log = broker.log.read_text(errors="replace")
    return f"Denied PUBLISH from {client_id} " in log and f"'{topic}'" in log


@pytest.mark.broker
def test_mosquitto_with_the_generated_acl_keeps_each_tenant_and_device_to_itself(
    tmp_path: Path,
) -> None:
    spec, project = fleet_project(tmp_path, "mqtt")
    acl_file = tmp_path / "acl"
    result = run_acl(spec, "--broker", "mosquitto", "-o", str(acl_file))
    assert result.returncode == 0, result.stderr
    passwords = _password_file(
        tmp_path / "passwords", {"fleet": "secret", "acme": "secret", "globex": "secret"}
    )
    broker = Mosquitto(
        tmp_path / "mosquitto",
        f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl_file}",
    )
    broker.start()
    record = tmp_path / "records.jsonl"
    service = ServiceProcess(
        project,
        "fleet",
        {
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(broker.port),
            "MQTT_USERNAME": "fleet",
            "MQTT_PASSWORD": "secret",
            "RECORD_FILE": str(record),
        },
    )
    device = other_device = None
    try:
        service.wait_for("subscribed")
        # Refused first, each from a connection of its own: mosquitto may drop the client
        # of a refused publish, and a second d-42 would take over the first one's session.
        refused = [
            "tenants/globex/devices/d-42/telemetry",  # another tenant
            "tenants/acme/devices/d-43/telemetry",  # another device
            "tenants/acme/devices/d-43/commands",  # only the service commands
            "fleet/dead-letter",  # only the service dead-letters
        ]
        for topic in refused:
            attempt(broker, "acme", "d-42", topic)
        commands = ("tenants/acme/devices/+/commands",)
        device = Device(broker.port, "acme", "d-42", commands)
        other_device = Device(broker.port, "acme", "d-43", ("tenants/acme/devices/d-42/commands",))
        # Its own telemetry reaches the service.
        device.publish("tenants/acme/devices/d-42/telemetry", {"value": 1})
        other_device.publish("tenants/acme/devices/d-43/telemetry", {"value": 4})
        read_records(record, 2)
        time.sleep(0.3)
        records = read_records(record, 2)
        assert [(r["topic"], r["message"]["value"]) for r in records] == [
            ("tenants/acme/devices/d-42/telemetry", 1),
            ("tenants/acme/devices/d-43/telemetry", 4),
        ]
        assert records[0]["params"] == {"tenantId": "acme", "deviceId": "d-42"}
        for topic in refused:
            assert denied(broker, "d-42", topic), topic
        # The service may command every device; a device reads only its own commands,
        # even through a wildcard subscription.
        commander = Device(broker.port, "fleet", "fleet-commander")
        commander.publish("tenants/acme/devices/d-43/commands", {"action": "a"})
        commander.publish("tenants/acme/devices/d-42/commands", {"action": "b"})
        commander.close()
        deadline = time.monotonic() + 5
        while not device.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert device.messages == ["tenants/acme/devices/d-42/commands"]
        assert other_device.messages == []
    finally:
        for client in (device, other_device):
            if client is not None:
                client.close()
        service.stop()
        broker.stop()
    assert "not authorised" not in service.output().lower(), service.output()


@pytest.mark.broker
def test_nats_with_the_generated_authorization_keeps_users_to_their_subjects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nats = pytest.importorskip("nats")
    spec, project = fleet_project(tmp_path, "nats")
    (tmp_path / "nats").mkdir()
    # nats-server reads an include relative to its configuration file.
    authorization = tmp_path / "nats" / "authorization.conf"
    result = run_acl(
        spec,
        "--broker",
        "nats",
        "--user",
        "acme:d-42",
        "--user",
        "globex",
        "-o",
        str(authorization),
    )
    assert result.returncode == 0, result.stderr
    passwords = {"fleet": "svc-secret", "acme": "acme-secret", "globex": "globex-secret"}
    for user, password in passwords.items():
        # nats-server reads a `$NAME` it does not define from its environment.
        monkeypatch.setenv(acl.password_variable(user), password)
    server = NatsServer(tmp_path / "nats", extra_config='include "authorization.conf"')
    server.start()
    record = tmp_path / "records.jsonl"
    services = [
        ServiceProcess(
            project,
            "fleet",
            {
                "NATS_URL": server.url,
                "NATS_USER": "fleet",
                "NATS_PASSWORD": "svc-secret",
                "RECORD_FILE": str(record),
            },
        )
        for _ in range(2)
    ]

    async def device_session() -> dict[str, Any]:
        seen: dict[str, Any] = {"errors": [], "commands": []}

        async def on_error(exc: Exception) -> None:
            seen["errors"].append(str(exc))

        acme = await nats.connect(
            server.url, user="acme", password="acme-secret", error_cb=on_error
        )
        service_user = await nats.connect(server.url, user="fleet", password="svc-secret")

        async def on_command(msg: Any) -> None:
            seen["commands"].append(msg.subject)

        await acme.subscribe("tenants.acme.devices.d-42.commands", cb=on_command)
        await acme.subscribe("tenants.globex.devices.d-42.commands", cb=on_command)
        for index in range(10):
            await acme.publish(
                "tenants.acme.devices.d-42.telemetry", json.dumps({"value": index}).encode()
            )
        await acme.publish("tenants.globex.devices.d-42.telemetry", b'{"value": -1}')
        await acme.publish("tenants.acme.devices.d-43.telemetry", b'{"value": -2}')
        # Request/reply through the service: an answer comes back to acme's inbox.
        reply = await acme.request("tenants.acme.status", b"{}", timeout=5)
        seen["answer"] = json.loads(reply.data)
        await service_user.publish("tenants.acme.devices.d-42.commands", b'{"action": "a"}')
        await service_user.publish("tenants.globex.devices.d-42.commands", b'{"action": "b"}')
        await acme.flush()
        await asyncio.sleep(0.5)
        await acme.close()
        await service_user.close()
        return seen

    try:
        for service in services:
            service.wait_for("subscribed")
        seen = asyncio.run(device_session())
        records = read_records(record, 10)
        time.sleep(0.3)
        records = read_records(record, 10)
    finally:
        for service in services:
            service.stop()
        server.stop()
    # Ten readings under acme's own subjects, each handled once over the queue group.
    assert sorted(r["message"]["value"] for r in records) == list(range(10))
    assert {r["topic"] for r in records} == {"tenants.acme.devices.d-42.telemetry"}
    assert seen["answer"] == {"devices": 3}
    assert seen["commands"] == ["tenants.acme.devices.d-42.commands"]
    violations = " ".join(seen["errors"]).lower()
    assert 'publish to "tenants.globex.devices.d-42.telemetry"' in violations
    assert 'publish to "tenants.acme.devices.d-43.telemetry"' in violations
    assert 'subscription to "tenants.globex.devices.d-42.commands"' in violations
    for service in services:
        assert "permissions violation" not in service.output().lower(), service.output()


@pytest.mark.broker
def test_the_nats_example_consumes_jetstream_under_its_generated_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_e2e_nats import PACKAGE, RECORDING_HANDLER, RECORDING_MODULES, spec_example

    nats = pytest.importorskip("nats")
    project = project_with_handlers(
        tmp_path / "iot", "nats", dict.fromkeys(RECORDING_MODULES, RECORDING_HANDLER)
    )
    (tmp_path / "nats").mkdir()
    authorization = tmp_path / "nats" / "authorization.conf"
    spec = EXAMPLES / "nats" / "asyncapi.yaml"
    result = run_acl(spec, "--broker", "nats", "--user", "dev1", "-o", str(authorization))
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv(acl.password_variable(PACKAGE), "svc")
    monkeypatch.setenv(acl.password_variable("dev1"), "dev")
    server = NatsServer(tmp_path / "nats", extra_config='include "authorization.conf"')
    server.start()
    record = tmp_path / "records.jsonl"
    service = ServiceProcess(
        project,
        PACKAGE,
        {
            "NATS_URL": server.url,
            "NATS_USER": PACKAGE,
            "NATS_PASSWORD": "svc",
            "RECORD_FILE": str(record),
        },
    )

    async def device() -> None:
        connection = await nats.connect(server.url, user="dev1", password="dev")
        reading = json.dumps(spec_example("TemperatureReading")).encode()
        await connection.publish("sensors.temperature.dev1", reading)
        announcement = json.dumps(spec_example("DeviceAnnouncement")).encode()
        await connection.publish("devices.announce", announcement)
        await connection.flush()
        await connection.close()

    try:
        service.wait_for("subscribed to")
        asyncio.run(device())
        records = read_records(record, 2)
    finally:
        service.stop()
        server.stop()
    assert sorted(r["operation"] for r in records) == [
        "receiveDeviceAnnouncement",
        "receiveTemperatureReading",
    ]
    assert "Violation" not in server.log.read_text(), server.log.read_text()
    assert "permissions violation" not in service.output().lower(), service.output()


# -- the corpus ---------------------------------------------------------------------------


def _corpus_with_brokers() -> list[tuple[Path, str, list[str]]]:
    """(document, broker, extra options) for every corpus document with such servers."""
    from asyncgen.load import RefPolicy, load_document
    from asyncgen.model import build_api

    if not SHARED_SPECS.is_dir():
        return []
    found = []
    for path in sorted(SHARED_SPECS.rglob("*.y*ml")):
        if "common" in path.parts:
            continue
        root = path.parents[1] if "social-media" in path.parts else None
        try:
            api, _ = build_api(load_document(path, RefPolicy(root=root)))
        except Exception:  # documents asyncgen refuses are covered by test_generated
            continue
        extra = ["--refs-root", str(root)] if root else []
        protocols = {server.protocol for server in api.servers}
        if protocols & {"mqtt", "mqtts", "secure-mqtt", "mqtt5"}:
            found.append((path, "mosquitto", extra))
        if "nats" in protocols:
            found.append((path, "nats", [*extra, "--user", "device-1"]))
    return found


@pytest.mark.broker
def test_rules_of_every_corpus_document_with_mqtt_or_nats_servers_load_in_the_broker(
    tmp_path: Path,
) -> None:
    documents = _corpus_with_brokers()
    if not documents:
        pytest.skip(f"{SHARED_SPECS} is not present")
    for index, (spec, broker, extra) in enumerate(documents):
        output = tmp_path / f"rules-{index}"
        result = run_acl(spec, "--broker", broker, "-o", str(output), *extra)
        assert result.returncode == 0, f"{spec}: {result.stderr}"
        if broker == "nats":
            _nats_config_loads(tmp_path / f"nats-{index}", output)
        else:
            _mosquitto_config_loads(tmp_path / f"mosquitto-{index}", output)
    assert len(documents) >= 10


def _nats_config_loads(workdir: Path, authorization: Path) -> None:
    workdir.mkdir()
    config = workdir / "nats.conf"
    included = os.path.relpath(authorization, workdir)
    config.write_text(f'listen: 127.0.0.1:{free_port()}\ninclude "{included}"\n')
    env = {**os.environ}
    text = authorization.read_text()
    for line in text.splitlines():
        if "password: $" in line:
            env[line.split("$", 1)[1].strip()] = "x"
    result = subprocess.run(
        [broker_binary("nats-server"), "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert result.returncode == 0, f"{authorization}: {result.stderr}\n{text}"


def _mosquitto_config_loads(workdir: Path, acl_file: Path) -> None:
    """mosquitto has no test mode: start it with the rules and see it serve."""
    broker = Mosquitto(workdir, f"acl_file {acl_file}")
    broker.start()
    try:
        wait_for_port(broker.port)
        assert broker.process is not None and broker.process.poll() is None
    finally:
        broker.stop()
    log = broker.log.read_text(errors="replace")
    assert "error" not in log.lower(), f"{acl_file}: {log}"
