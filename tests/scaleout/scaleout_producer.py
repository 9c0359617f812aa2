"""The example app's producer, and the test's broker chores.

``python scaleout_producer.py produce SEED JOBS REPEATS`` enqueues :func:`sms_tasks.plan`'s
jobs, then ``REPEATS`` of them a second time (a double click, a retried webhook: the
same message id), and prints one JSON line: ``{"enqueued": N, "seconds": S}``.

``python scaleout_producer.py cleanup`` prints ``{"ready": N, "consumers": C}`` for the
queue (messages waiting, not held by any worker) and deletes the queue, the dead-letter
queue and the exchange.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import aio_pika
from scaleout_jobs import plan
from sms_tasks import AMQP_URL, QUEUE, broker, send_sms

BATCH = 500  # publishes in flight at once (each waits for RabbitMQ's confirm)


async def produce(seed: int, jobs: int, repeats: int) -> None:
    started = time.monotonic()
    todo = plan(seed, jobs)
    again = random.Random(seed + 1).sample(todo, repeats)
    await broker.startup()
    try:
        deliveries = [(job, False) for job in todo] + [(job, True) for job in again]
        for at in range(0, len(deliveries), BATCH):
            await asyncio.gather(
                *(
                    send_sms.kiq(job.job_id, job.mobile, job.content, repeat)
                    for job, repeat in deliveries[at : at + BATCH]
                )
            )
    finally:
        await broker.shutdown()
    print(json.dumps({"enqueued": len(deliveries), "seconds": round(time.monotonic() - started, 2)}))


async def cleanup() -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(QUEUE, passive=True)
        ready, consumers = queue.declaration_result.message_count, queue.declaration_result.consumer_count
        await channel.queue_delete(QUEUE)
        await channel.queue_delete(f"{QUEUE}.dead")
        await channel.exchange_delete(f"{QUEUE}.exchange")
    print(json.dumps({"ready": ready, "consumers": consumers}))


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        asyncio.run(produce(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(cleanup())
