"""One worker process of the example app: what ``taskiq worker sms_tasks:broker --workers 1``
runs in its child, without the supervisor that would restart it when the test kills it.

Starts the broker as a worker (``WORKER_STARTUP`` opens this process's client), prints
``ready`` on standard output, then runs taskiq's own :class:`~taskiq.receiver.Receiver`
with ``CONCURRENCY`` jobs at once, each acknowledged once it has run. SIGTERM or SIGINT
stops it gracefully: no new jobs, running ones finish (at most 10 s), then the broker's
connections close and RabbitMQ requeues whatever it still held for this worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from sms_tasks import CONCURRENCY, broker
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver


async def main() -> None:
    finish = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish.set)
    broker.is_worker_process = True
    await broker.startup()
    print("ready", flush=True)
    try:
        with ThreadPoolExecutor(max_workers=1) as executor:
            receiver = Receiver(
                broker,
                executor=executor,
                run_startup=False,
                max_async_tasks=CONCURRENCY,
                ack_type=AcknowledgeType.WHEN_EXECUTED,
                wait_tasks_timeout=10,
            )
            await receiver.listen(finish)
    finally:
        await broker.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main())
