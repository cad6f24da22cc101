"""Concurrent requests become one batched generate call.

One model, one worker thread: the first waiting request opens a short collection window; whatever
arrives within it (up to ``max_batch``) is decoded together, while the event loop keeps accepting
requests for the next batch. A batched step costs about as much as a single one on a small model, so
concurrent clients share the model's time instead of queueing for it one by one.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class Done:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    message: str


@dataclass(eq=False)
class Job:
    """One request's row: its prompt ids and decoding settings, and the queue its events arrive on.

    ``spec`` is the row's ``finetune.serve.rows.RowSpec``. Events: ``str`` (newly visible text of a
    streaming row), then one ``Done`` or ``Failed``.
    """

    ids: list[int]
    spec: Any
    cancelled: bool = False
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    loop: asyncio.AbstractEventLoop | None = None

    def send(self, event: Any) -> None:
        """Deliver an event from the worker thread to the request's coroutine."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def outcome(self) -> Done | Failed:
        """The final event (text deltas of a streaming row are skipped)."""
        while True:
            event = await self.events.get()
            if isinstance(event, (Done, Failed)):
                return event


class Batcher:
    """Collects jobs for ``window_s`` after the first arrives and runs them as one batch in a worker thread.

    ``run(jobs)`` does the decoding and sends every job its ``Done``; if it raises, every job of the batch
    gets ``Failed`` and the server keeps serving.
    """

    def __init__(self, run: Callable[[list[Job]], None], max_batch: int = 16, window_s: float = 0.01) -> None:
        self.run = run
        self.max_batch = max_batch
        self.window_s = window_s
        self.sizes: list[int] = []  # batch sizes so far: the server reports them, tests read them
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._active: list[Job] = []
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, job: Job) -> Job:
        job.loop = asyncio.get_running_loop()
        self._queue.put_nowait(job)
        return job

    def start(self) -> asyncio.Task:
        """The task that collects and runs batches until cancelled; queue and worker belong to the running loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ft-generate")
        return asyncio.get_running_loop().create_task(self._serve_forever())

    async def _serve_forever(self) -> None:
        while True:
            batch = await self._collect()
            if batch:
                await self._run(batch)

    async def _collect(self) -> list[Job]:
        """The first waiting job and those that arrive within the window after it, clients still there."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while len(batch) < self.max_batch:
            left = deadline - loop.time()
            if left <= 0 and self._queue.empty():
                break
            try:
                batch.append(self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return [job for job in batch if not job.cancelled]

    async def _run(self, batch: list[Job]) -> None:
        self._active = batch
        self.sizes.append(len(batch))
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.run, batch)
        except Exception as exc:  # noqa: BLE001 - one bad batch must not take the server down
            log.exception("generation failed for a batch of %d", len(batch))
            for job in batch:
                job.send(Failed(f"generation failed: {type(exc).__name__}: {exc}"))
        finally:
            self._active = []

    def close(self) -> None:
        """Stop: the running batch ends at its next step, queued jobs are dropped, the worker is let go."""
        for job in self._active:
            job.cancelled = True
        while not self._queue.empty():
            self._queue.get_nowait().send(Failed("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False)
