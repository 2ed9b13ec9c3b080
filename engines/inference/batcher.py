"""Batched inference shared by every live session of a process.

Each session sends small requests (one frame's features, or a few rows) and a model is much
cheaper per row when it sees them stacked. ``InferenceBatcher`` wraps a row-independent
batched function ``fn: (B, *in_shape) -> (B, *out_shape)`` and runs ``workers`` daemon
worker threads (default one; more let batches run side by side on a CPU's cores), each of
which:

1. waits for the first queued request,
2. keeps gathering until the batch holds ``max_batch`` rows or ``max_wait_ms`` have passed
   since that first request was submitted, whichever comes first (a request that would
   overflow the batch waits for the next one),
3. stacks the rows, calls ``fn`` once and resolves each request's ``Future`` with its own
   rows, copied out so no two sessions share memory.

Isolation between sessions:

* Every request is validated in the caller's thread (shape, numeric dtype cast to float32,
  all finite). A bad one gets a ``ValueError`` naming the problem and never reaches ``fn``.
* If ``fn`` raises on a batch, each request of it is retried alone, so only the request(s)
  that make ``fn`` fail get the exception and the others still get their results.
* If ``fn`` returns the wrong number of rows, every request of that batch fails with a
  ``BatchOutputError`` (a broken model, not a bad request: no retry).

Threads use ``submit`` / ``__call__``; the server's event loop awaits ``infer``. A pending
future that is cancelled before its batch starts is skipped. ``close`` fails everything
still queued with ``BatcherClosedError``, lets the batch in flight finish and refuses new
requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType

import numpy as np

log = logging.getLogger(__name__)


class BatcherClosedError(RuntimeError):
    """The batcher was closed before (or while) the request was queued."""


class BatchOutputError(RuntimeError):
    """``fn`` returned an output whose first axis does not match the batch it was given."""


@dataclass(frozen=True)
class BatcherStats:
    requests: int  # requests that went into a batch (rejected ones excluded)
    rejected: int  # requests that failed validation and never reached fn
    batches: int  # gathered batches (single-request retries after a failure not counted)
    rows: int  # rows over all gathered batches
    max_batch_size: int  # most rows in one gathered batch

    @property
    def mean_batch_size(self) -> float:
        """Mean rows per gathered batch (0 before the first batch)."""
        return self.rows / self.batches if self.batches else 0.0


@dataclass
class _Request:
    x: np.ndarray  # (k, *input_shape) float32, owned by the batcher
    single: bool  # submitted as one row of input_shape: resolve with (*out_shape,)
    future: Future[np.ndarray]
    t_submit: float  # time.monotonic() at submit

    @property
    def rows(self) -> int:
        return self.x.shape[0]


class InferenceBatcher:
    """Gathers requests from many threads / coroutines into batched calls of ``fn``.

    ``fn`` maps (B, *input_shape) float32 to (B, *out_shape); rows must be independent.
    A request is one row of ``input_shape`` (result (*out_shape,)) or a small batch
    (k, *input_shape) with 1 <= k <= max_batch (result (k, *out_shape)).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        input_shape: tuple[int, ...],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        name: str = "inference",
        workers: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.fn = fn
        self.input_shape = tuple(int(d) for d in input_shape)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.name = name
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._requests = self._rejected = self._batches = self._rows = self._max_rows = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"{name}-batcher-{k}", daemon=True)
            for k in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    # ---- public API -------------------------------------------------------------------

    def submit(self, x: np.ndarray) -> Future[np.ndarray]:
        """Queue one request; the future resolves with its own rows of ``fn``'s output.

        An invalid request returns an already failed future (``ValueError``).
        Raises ``BatcherClosedError`` after ``close``.
        """
        future: Future[np.ndarray] = Future()
        try:
            rows, single = self._validate(x)
        except ValueError as exc:
            with self._cond:
                self._check_open()
                self._rejected += 1
            future.set_exception(exc)
            return future
        with self._cond:
            self._check_open()
            self._queue.append(_Request(rows, single, future, time.monotonic()))
            self._cond.notify()
        return future

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Blocking ``submit(x).result()``."""
        return self.submit(x).result()

    async def infer(self, x: np.ndarray) -> np.ndarray:
        """Awaitable ``submit`` for an asyncio event loop (cancelling it cancels the request
        if its batch has not started)."""
        return await asyncio.wrap_future(self.submit(x))

    @property
    def stats(self) -> BatcherStats:
        with self._cond:
            return BatcherStats(
                self._requests, self._rejected, self._batches, self._rows, self._max_rows
            )

    def close(self) -> None:
        """Fail queued requests with ``BatcherClosedError``, refuse new ones and wait for the
        batch in flight. Idempotent."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for req in pending:
            if req.future.set_running_or_notify_cancel():
                req.future.set_exception(BatcherClosedError(f"{self.name}: batcher closed"))
        for worker in self._workers:
            if worker is not threading.current_thread():  # close() called from inside fn
                worker.join()

    def __enter__(self) -> InferenceBatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- caller side ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BatcherClosedError(f"{self.name}: batcher closed")

    def _validate(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        """Returns a private (k, *input_shape) float32 copy of ``x`` and whether it was a
        single row; raises ``ValueError`` naming what is wrong."""
        a = np.asarray(x)
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ValueError(f"{self.name}: dtype {a.dtype} is not a real numeric type")
        single = a.shape == self.input_shape
        if not single and a.shape[1:] != self.input_shape:
            raise ValueError(
                f"{self.name}: shape {a.shape} is neither {self.input_shape} "
                f"nor (k, *{self.input_shape})"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            rows = np.array(a[None] if single else a, dtype=np.float32)  # (k, *input_shape)
        if not 1 <= rows.shape[0] <= self.max_batch:
            raise ValueError(
                f"{self.name}: a batch of {rows.shape[0]} rows is outside 1..{self.max_batch}"
            )
        if not np.isfinite(rows).all():
            raise ValueError(f"{self.name}: input has non-finite values (NaN or inf in float32)")
        return rows, single

    # ---- worker side ------------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._gather()) is not None:
            if batch:  # empty when every gathered request had been cancelled
                self._process(batch)

    def _gather(self) -> list[_Request] | None:
        """Blocks for the next batch; None once closed. Requests are marked running here, so
        cancelled ones are dropped and the taken ones can no longer be cancelled."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = self._queue[0].t_submit + self.max_wait_s
            batch: list[_Request] = []
            rows = 0
            while True:
                while self._queue and rows + self._queue[0].rows <= self.max_batch:
                    req = self._queue.popleft()
                    if req.future.set_running_or_notify_cancel():
                        batch.append(req)
                        rows += req.rows
                full = rows == self.max_batch or bool(self._queue)  # head does not fit
                remaining = deadline - time.monotonic()
                if full or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            if batch:
                self._requests += len(batch)
                self._batches += 1
                self._rows += rows
                self._max_rows = max(self._max_rows, rows)
            return batch

    def _call(self, x: np.ndarray) -> np.ndarray:
        """fn on a (B, *input_shape) batch, checked to give (B, ...)."""
        out = np.asarray(self.fn(x))  # (B, *out_shape)
        if out.ndim == 0 or out.shape[0] != x.shape[0]:
            raise BatchOutputError(
                f"{self.name}: fn returned shape {out.shape} for a batch of {x.shape[0]} rows"
            )
        return out

    def _process(self, batch: list[_Request]) -> None:
        try:
            out = self._call(np.concatenate([r.x for r in batch]))  # (B, *out_shape)
        except BatchOutputError as exc:
            for r in batch:
                r.future.set_exception(BatchOutputError(str(exc)))
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            log.warning(
                "%s: batch of %d requests failed (%r); retrying each alone",
                self.name,
                len(batch),
                exc,
            )
            for r in batch:
                self._process([r])
            return
        start = 0
        for r in batch:
            rows = out[start : start + r.rows]  # (k, *out_shape), a view into out
            r.future.set_result(rows[0].copy() if r.single else rows.copy())
            start += r.rows
