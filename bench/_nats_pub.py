"""A nats-py flood publisher: N copies of a payload on a subject, as fast as it can, then
flush. Prints its own rate as JSON, so the benchmark can check that it outpaces the
subscribers. argv: URL SUBJECT COUNT PAYLOAD_FILE"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import nats


async def main() -> None:
    url, subject, count, payload_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with open(payload_file, "rb") as stream:
        payload = stream.read()
    nc = await nats.connect(url, name="bench-pub", pending_size=64 * 1024 * 1024)
    started = time.perf_counter()
    for index in range(count):
        await nc.publish(subject, payload)
        if index % 1000 == 999:
            await asyncio.sleep(0)  # let the flusher write
    await nc.flush(timeout=60)
    elapsed = time.perf_counter() - started
    await nc.close()
    print(json.dumps({"count": count, "seconds": elapsed, "rate": count / elapsed}))


if __name__ == "__main__":
    asyncio.run(main())
