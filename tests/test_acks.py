"""The MQTT runtime's ack batching (`Acks`), against a fake client: acks in arrival
order, only for finished messages, and never held back for long by QoS 0 traffic or a
queue that does not empty."""

from __future__ import annotations

import asyncio

from asyncgen.runtime.mqtt import Acks, Delivery


class Client:
    """The two things `Acks` asks of a client: its queue length, and `ack()`."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.waiting = 0

    def queued(self) -> int:
        return self.waiting

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def message(mid: int, qos: int = 1) -> Delivery:
    return Delivery("t", b"", qos, False, mid)


def acks_of(client: Client) -> Acks:
    return Acks(client)  # type: ignore[arg-type]  # a fake with only what Acks uses


def test_an_ack_waiting_behind_qos0_messages_goes_out_when_the_queue_drains() -> None:
    client = Client()
    acks = acks_of(client)
    first = acks.expect(message(1))
    client.waiting = 2  # two QoS 0 messages queued meanwhile
    acks.done(first)
    assert client.acked == []
    client.waiting = 0
    for _ in range(2):
        acks.done(acks.expect(message(0, qos=0)))
    assert client.acked == [1]


def test_a_stream_of_qos0_messages_holds_an_ack_back_for_at_most_a_batch() -> None:
    client = Client()
    acks = acks_of(client)
    client.waiting = 1000  # the queue never empties
    acks.done(acks.expect(message(7)))
    for _ in range(acks.BATCH - 2):
        acks.done(acks.expect(message(0, qos=0)))
    assert client.acked == []
    acks.done(acks.expect(message(0, qos=0)))
    assert client.acked == [7]


def test_acks_go_out_in_arrival_order_and_only_for_finished_messages() -> None:
    client = Client()
    acks = acks_of(client)
    a, b, c = (acks.expect(message(mid)) for mid in (1, 2, 3))
    acks.done(c)
    acks.done(b)
    assert client.acked == [], "1 is not finished: nothing may go out"
    acks.skip(a)  # 1 stays unacknowledged, without holding 2 and 3
    assert client.acked == [2, 3]


def test_a_closed_connection_acks_nothing_more() -> None:
    client = Client()
    acks = acks_of(client)
    pending = acks.expect(message(5))
    acks.close()
    acks.done(pending)
    acks.done(acks.expect(message(6)))
    acks.flush()
    assert client.acked == []


def test_qos0_messages_need_no_ack() -> None:
    acks = acks_of(Client())
    assert acks.expect(message(9, qos=0)) is None


def test_with_a_loop_an_idle_ack_waits_one_read_and_goes_out_with_what_came_meanwhile() -> None:
    async def scenario() -> list[list[int]]:
        client = Client()
        acks = Acks(client, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
        seen = []
        first = acks.expect(message(1))
        acks.done(first)  # nothing queued: checked again after the loop's next read
        seen.append(list(client.acked))
        # The next turn reads a message from the socket: not idle after all.
        client.waiting = 1
        second = acks.expect(message(2))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(list(client.acked))
        client.waiting = 0
        acks.done(second)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(list(client.acked))
        return seen

    assert asyncio.run(scenario()) == [[], [], [1, 2]]


def test_with_a_loop_a_full_batch_goes_out_at_once() -> None:
    async def scenario() -> list[int]:
        client = Client()
        acks = Acks(client, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
        for mid in range(1, acks.BATCH + 1):
            acks.done(acks.expect(message(mid)))
        return list(client.acked)

    assert asyncio.run(scenario()) == list(range(1, Acks.BATCH + 1))
