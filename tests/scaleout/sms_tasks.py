"""The example app's task definitions: SMS jobs on taskiq with a RabbitMQ broker.

One task, :func:`send_sms`: a job is a message id (its idempotency key), a number and
a text. Every worker process builds its own :class:`~ihuyi_async.IhuyiClient` when it
starts (``WORKER_STARTUP``), with the limiter and the idempotency keys on one shared
Redis, so four workers on one host or forty on ten hosts apply one set of per-number
limits and send each message at most once, however often the broker delivers it.

The message is acknowledged after the task returns (``AcknowledgeType.WHEN_EXECUTED``,
set by the worker entry point), and the task records the job's outcome in Redis
before it returns: a worker killed at any point leaves its unacknowledged messages to
RabbitMQ, which hands them to the other workers as soon as the dead worker's
connection closes; the key store then decides whether they may still be sent.

Everything is configured by environment variables, so the producer, the workers and
the test read one configuration:

``SCALEOUT_AMQP_URL``, ``SCALEOUT_QUEUE`` (the queue's name; the exchange and the
dead-letter queue are named after it), ``SCALEOUT_REDIS_URL``, ``SCALEOUT_PREFIX`` (of
every Redis key), ``SCALEOUT_EMULATOR_URL`` (the provider's base URL),
``SCALEOUT_WORKER`` (this worker's name), ``SCALEOUT_CONCURRENCY`` (jobs one worker runs
at once), ``SCALEOUT_LEASE`` (seconds a dead worker's claim blocks its key).
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal, cast

import anyio
import redis.asyncio as redis
from scaleout_jobs import finished_key, outcomes_key, started_key
from taskiq import Context, TaskiqDepends, TaskiqEvents, TaskiqState
from taskiq_aio_pika import AioPikaBroker, Exchange, Queue

import ihuyi_async as ih
from ihuyi_async.idempotency import RedisKeyStore
from ihuyi_async.limiter import Limiter, RedisStore, provider_rules

ACCOUNT, API_KEY = "test-apiid", "test-apikey"  # the emulator's default account
AMQP_URL = os.environ.get("SCALEOUT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = os.environ.get("SCALEOUT_QUEUE", "ihuyi-sms")
REDIS_URL = os.environ.get("SCALEOUT_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("SCALEOUT_PREFIX", "ihuyi-sms:")
EMULATOR_URL = os.environ.get("SCALEOUT_EMULATOR_URL", "http://127.0.0.1:8080")
WORKER = os.environ.get("SCALEOUT_WORKER", f"pid{os.getpid()}")
CONCURRENCY = int(os.environ.get("SCALEOUT_CONCURRENCY", "64"))
#: The client's per-phase timeout: its deadline is twice this (4 s), and the key
#: store's lease must exceed that deadline plus the limiter's max_wait (5 s).
TIMEOUT = 2.0
LEASE = float(os.environ.get("SCALEOUT_LEASE", "10"))
#: The client's backend (``SCALEOUT_BACKEND``); IhuyiClient refuses any other name in one line.
BACKEND = cast('Literal["httpx", "aiohttp", "native"]', os.environ.get("SCALEOUT_BACKEND", "aiohttp"))
#: Seconds added to the per-second rule's 1 s spacing. The provider measures on arrival, so
#: the margin must cover how late a request may arrive: on a saturated 2-core host (four
#: workers, the emulator, RabbitMQ and Redis) we saw requests 0.35 s late, and the
#: library's default margin (0.2 s) let the emulator answer 4080. 1 s keeps 0.65 s spare.
MARGIN = float(os.environ.get("SCALEOUT_MARGIN", "1.0"))

broker = AioPikaBroker(
    url=AMQP_URL,
    # RabbitMQ hands a worker at most this many unacknowledged messages: exactly what it runs
    qos=CONCURRENCY,
    exchange=Exchange(name=f"{QUEUE}.exchange"),
    task_queues=[Queue(name=QUEUE)],  # a quorum queue, taskiq-aio-pika's default
    dead_letter_queue=Queue(name=f"{QUEUE}.dead"),
)

# -- one client per worker process -----------------------------------------------------


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def open_client(state: TaskiqState) -> None:
    pool = redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=32, timeout=20)
    state.redis = redis.Redis(connection_pool=pool)
    limiter = Limiter(provider_rules(per_second_margin=MARGIN), RedisStore(state.redis, prefix=f"{PREFIX}limit:"))
    keys = RedisKeyStore(state.redis, prefix=f"{PREFIX}idem:", lease=LEASE)
    state.client = ih.IhuyiClient(
        ACCOUNT,
        API_KEY,
        base_url=EMULATOR_URL,
        timeout=TIMEOUT,
        backend=BACKEND,
        limiter=limiter,
        idempotency=keys,
    )


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def close_client(state: TaskiqState) -> None:
    await state.client.aclose()
    await state.redis.aclose()


# -- the task ----------------------------------------------------------------------------


async def _attempt(client: ih.IhuyiClient, job_id: str, mobile: str, content: str) -> dict[str, Any] | None:
    """One keyed send, as an outcome: accepted, rejected or unknown (``None``: key in flight)."""
    try:
        sent = await client.send(mobile, content, idempotency_key=job_id)
    except ih.IdempotencyInProgressError:
        return None
    except ih.DeliveryUnknownError as exc:
        return {"o": "unknown", "reason": exc.reason}
    except ih.ApiError as exc:
        return {"o": "rejected", "code": exc.code, "local": exc.local}
    except (ih.TransportError, ih.StoreUnavailableError) as exc:
        # provably not sent: report it rather than lose it (the producer may resend)
        return {"o": "not_sent", "error": type(exc).__name__}
    except ih.IhuyiError as exc:  # an unparseable answer, a key reused: never expected
        return {"o": "error", "error": type(exc).__name__}
    return {"o": "accepted", "smsid": sent.smsid, "replayed": sent.replayed}


async def _send(client: ih.IhuyiClient, job_id: str, mobile: str, content: str) -> dict[str, Any]:
    """Send once per message id; every ending is an outcome."""
    # A redelivered job whose first delivery died mid-send finds its key in flight: the
    # call waits up to its deadline, then says so. Ask again until the dead worker's lease
    # ends; from then on the key reads "unknown" (the message may have gone), never resent.
    with anyio.move_on_after(LEASE + 4 * TIMEOUT):
        while (outcome := await _attempt(client, job_id, mobile, content)) is None:
            pass
        return outcome
    return {"o": "not_sent", "error": "IdempotencyInProgressError"}


@broker.task(task_name="ihuyi.send_sms")
async def send_sms(
    job_id: str,
    mobile: str,
    content: str,
    repeat: bool = False,
    context: Context = TaskiqDepends(),  # noqa: B008 - taskiq's way to inject the context
) -> str:
    state = context.state
    delivery = f"{job_id}#dup" if repeat else job_id
    r: Any = state.redis
    await r.sadd(started_key(WORKER, PREFIX), delivery)
    outcome = await _send(state.client, job_id, mobile, content)
    outcome["w"] = WORKER
    async with r.pipeline(transaction=True) as pipe:  # recorded before the ack
        pipe.hset(outcomes_key(PREFIX), delivery, json.dumps(outcome))
        pipe.sadd(finished_key(WORKER, PREFIX), delivery)
        await pipe.execute()
    return str(outcome["o"])
