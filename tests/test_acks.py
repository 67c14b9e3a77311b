"""The generated MQTT service's ack batching (`_Acks`), without a broker: acks in
arrival order, only for finished messages, and never held back for long by QoS 0
traffic or a queue that does not empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import EXAMPLES

PREAMBLE = """
import json
from iot_device_management._generated.service import _Acks

class Paho:
    def __init__(self):
        self.acked = []
    def ack(self, mid, qos):
        self.acked.append(mid)

class Queue:
    waiting = 0
    def __len__(self):
        return self.waiting

class Client:
    def __init__(self):
        self._client, self.messages = Paho(), Queue()

class Message:
    def __init__(self, mid, qos):
        self.mid, self.qos = mid, qos

client = Client()
acks = _Acks(client)
"""


def run(script: str) -> list[int]:
    result = subprocess.run(
        [sys.executable, "-c", PREAMBLE + script + "\nprint(json.dumps(client._client.acked))"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES / "mqtt" / "generated" / "src")},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_ack_waiting_behind_qos0_messages_goes_out_when_the_queue_drains() -> None:
    acked = run(
        """
first = acks.expect(Message(1, 1))
client.messages.waiting = 2          # two QoS 0 messages queued meanwhile
acks.done(first)
client.messages.waiting = 0
for _ in range(2):
    acks.done(acks.expect(Message(0, 0)))
"""
    )
    assert acked == [1]


def test_a_stream_of_qos0_messages_holds_an_ack_back_for_at_most_a_batch() -> None:
    acked = run(
        """
client.messages.waiting = 1000       # the queue never empties
acks.done(acks.expect(Message(7, 1)))
for _ in range(acks.BATCH - 2):
    acks.done(acks.expect(Message(0, 0)))
assert client._client.acked == [], client._client.acked
acks.done(acks.expect(Message(0, 0)))
"""
    )
    assert acked == [7]


def test_acks_go_out_in_arrival_order_and_only_for_finished_messages() -> None:
    acked = run(
        """
client.messages.waiting = 0
a, b, c = (acks.expect(Message(mid, 1)) for mid in (1, 2, 3))
acks.done(c)
acks.done(b)
assert client._client.acked == [], "1 is not finished: nothing may go out"
acks.skip(a)                         # 1 stays unacknowledged, without holding 2 and 3
"""
    )
    assert acked == [2, 3]


def test_a_closed_connection_acks_nothing_more() -> None:
    acked = run(
        """
client.messages.waiting = 0
pending = acks.expect(Message(5, 1))
acks.close()
acks.done(pending)
acks.done(acks.expect(Message(6, 1)))
"""
    )
    assert acked == []
