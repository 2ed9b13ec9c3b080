"""InferenceBatcher: batched results equal unbatched ones, sessions never see each other's rows,
the batch and wait bounds hold, and a bad or failing request fails alone."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from engines.inference.batcher import (
    BatcherClosedError,
    BatchOutputError,
    InferenceBatcher,
)

D = 8  # features per request
W = np.linspace(-1.5, 2.0, D - 2, dtype=np.float32)
B = np.linspace(0.5, -0.25, D - 2, dtype=np.float32)
POISON = 666.0  # a row with this in column 2 makes the model raise
TIMEOUT = 10.0  # seconds: a bound on waiting for a future, never reached when things work


def np_model(x: np.ndarray) -> np.ndarray:
    """(B, D) -> (B, D + 1): columns 0-1 pass through (they carry the sender's id), the rest
    is row-wise arithmetic only, so results are bitwise independent of the batch size."""
    feats = x[:, 2:]  # (B, D-2)
    hidden = np.maximum(feats * W + B, 0.0) * feats  # (B, D-2)
    total = hidden[:, :1] - hidden[:, 1:2] * 0.5  # (B, 1)
    return np.concatenate([x[:, :2], hidden, total], axis=1)  # (B, D+1)


class Recorder:
    """Wraps a model and records the batch size of every call it gets."""

    def __init__(self, model=np_model) -> None:
        self.model = model
        self.sizes: list[int] = []
        self.inputs: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(x.shape[0])
        self.inputs.append(x.copy())
        if np.any(x[:, 2] == POISON):
            raise RuntimeError("poisoned row")
        return self.model(x)


class Gate(Recorder):
    """A Recorder whose first call blocks until released, so requests pile up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(TIMEOUT)
        return super().__call__(x)


def request(sender: int, index: int, seed: int = 0) -> np.ndarray:
    """One (D,) request: sender and index in columns 0-1, distinct features after."""
    rng = np.random.default_rng([seed, sender, index])
    return np.concatenate([[sender, index], rng.normal(size=D - 2)]).astype(np.float32)


def unbatched(x: np.ndarray) -> np.ndarray:
    return np_model(x[None])[0]


def run_threads(n: int, target) -> None:
    """Runs target(i) in n threads started together; re-raises the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            barrier.wait(TIMEOUT)
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def test_concurrent_results_equal_unbatched_without_crosstalk() -> None:
    n_threads, per_thread = 16, 50
    rec = Recorder()
    with InferenceBatcher(rec, (D,), name="np") as batcher:

        def session(tid: int) -> None:
            xs = [request(tid, i) for i in range(per_thread)]
            futures = [batcher.submit(x) for x in xs]
            for i, (x, fut) in enumerate(zip(xs, futures, strict=True)):
                y = fut.result(TIMEOUT)
                assert y.shape == (D + 1,)
                assert (y[0], y[1]) == (tid, i)  # its own row, nobody else's
                assert np.array_equal(y, unbatched(x))

        run_threads(n_threads, session)
        stats = batcher.stats
    total = n_threads * per_thread
    assert stats.requests == total and stats.rows == total and sum(rec.sizes) == total
    assert stats.batches == len(rec.sizes) < total  # some requests shared a call
    assert stats.max_batch_size == max(rec.sizes) > 1
    assert stats.mean_batch_size == pytest.approx(total / stats.batches)


def test_max_batch_bounds_every_call_and_mini_batches_come_back_whole() -> None:
    rec = Recorder()
    with InferenceBatcher(rec, (D,), max_batch=4, name="small") as batcher:

        def session(tid: int) -> None:
            for i in range(20):
                k = 1 + (tid + i) % 3  # 1..3 rows per request
                x = np.stack([request(tid, 100 * i + j) for j in range(k)])  # (k, D)
                y = batcher(x)
                assert y.shape == (k, D + 1)
                assert np.array_equal(y, np_model(x))

        run_threads(8, session)
        stats = batcher.stats
    assert max(rec.sizes) <= 4 and stats.max_batch_size <= 4
    assert sum(rec.sizes) == stats.rows == sum(1 + (t + i) % 3 for t in range(8) for i in range(20))


def test_queued_requests_fill_batches_up_to_max_and_get_private_copies() -> None:
    gate = Gate()
    with InferenceBatcher(gate, (D,), max_batch=4, name="gate") as batcher:
        first = batcher.submit(request(0, 0))
        assert gate.entered.wait(TIMEOUT)  # fn is busy with the first request alone
        xs = [request(1, i) for i in range(9)]
        futures = [batcher.submit(x) for x in xs]  # queue behind it
        gate.release.set()
        assert np.array_equal(first.result(TIMEOUT), unbatched(request(0, 0)))
        ys = [f.result(TIMEOUT) for f in futures]
    assert gate.sizes == [1, 4, 4, 1]
    for x, y in zip(xs, ys, strict=True):
        assert np.array_equal(y, unbatched(x))
        assert y.flags.owndata  # a copy, not a view into the batch output
    ys[0][:] = -1.0
    assert np.array_equal(ys[1], unbatched(xs[1]))


def test_lone_request_is_answered_within_the_wait_bound() -> None:
    rec = Recorder()
    with InferenceBatcher(rec, (D,), max_batch=64, max_wait_ms=2.0, name="lone") as batcher:
        latencies = []
        for i in range(5):
            t0 = time.perf_counter()
            y = batcher(request(0, i))
            latencies.append(time.perf_counter() - t0)
            assert np.array_equal(y, unbatched(request(0, i)))
    assert rec.sizes == [1] * 5  # the batch was never full, yet each went out
    assert statistics.median(latencies) < 0.050


def test_full_batch_goes_out_without_waiting_for_the_window() -> None:
    rec = Recorder()
    with InferenceBatcher(rec, (D,), max_batch=3, max_wait_ms=20_000, name="full") as batcher:
        t0 = time.perf_counter()
        futures = [batcher.submit(request(0, i)) for i in range(3)]
        ys = [f.result(TIMEOUT) for f in futures]  # a 20 s window would time out here
        elapsed = time.perf_counter() - t0
    assert rec.sizes == [3]  # gathered into one call within the window
    assert elapsed < 2.0
    assert all(np.array_equal(y, unbatched(request(0, i))) for i, y in enumerate(ys))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.where(np.arange(D) == 3, np.nan, 1.0), "non-finite"),
        (np.full(D, np.inf), "non-finite"),
        (np.full(D, 1e39), "non-finite"),  # finite in float64, inf in float32
        (np.ones(D + 1), "shape"),
        (np.ones((2, 3, D)), "shape"),
        (np.ones((0, D)), "outside 1..64"),
        (np.ones((65, D)), "outside 1..64"),
        (np.array(["a"] * D), "dtype"),
        (np.ones(D, dtype=np.complex64), "dtype"),
        (np.ones(D, dtype=bool), "dtype"),
    ],
)
def test_invalid_request_fails_alone_and_never_reaches_fn(bad: np.ndarray, message: str) -> None:
    rec = Recorder()
    with InferenceBatcher(rec, (D,), max_wait_ms=20.0, name="val") as batcher:
        goods = [request(0, i) for i in range(4)]
        good_futures = [batcher.submit(x) for x in goods[:2]]
        bad_future = batcher.submit(bad)
        good_futures += [batcher.submit(x) for x in goods[2:]]
        with pytest.raises(ValueError, match=message):
            bad_future.result(TIMEOUT)
        for x, fut in zip(goods, good_futures, strict=True):
            assert np.array_equal(fut.result(TIMEOUT), unbatched(x))
        stats = batcher.stats
    assert (stats.requests, stats.rejected, sum(rec.sizes)) == (4, 1, 4)
    seen = np.concatenate(rec.inputs)  # (4, D): only the good rows reached fn
    assert np.isfinite(seen).all() and seen.shape == (4, D)


def test_fn_failure_on_one_request_does_not_poison_the_batch() -> None:
    rec = Recorder()
    # max_batch=6 and a 20 s window: the six requests go out together once all are queued
    with InferenceBatcher(rec, (D,), max_batch=6, max_wait_ms=20_000, name="poison") as batcher:
        xs = [request(0, i) for i in range(6)]
        xs[3][2] = POISON
        futures = [batcher.submit(x) for x in xs]
        for i, (x, fut) in enumerate(zip(xs, futures, strict=True)):
            if i == 3:
                with pytest.raises(RuntimeError, match="poisoned row"):
                    fut.result(TIMEOUT)
            else:
                assert np.array_equal(fut.result(TIMEOUT), unbatched(x))
        probe = np.stack([request(1, i) for i in range(6)])  # (6, D): a full batch at once
        assert np.array_equal(batcher(probe), np_model(probe))  # the worker is still alive
    assert rec.sizes == [6, 1, 1, 1, 1, 1, 1, 6]  # one failed batch, six retries, the probe


def test_wrong_row_count_fails_the_batch_with_a_clear_error() -> None:
    def first_row_only(x: np.ndarray) -> np.ndarray:
        return np_model(x[:1])  # right only for batches of one

    with InferenceBatcher(first_row_only, (D,), max_batch=2, max_wait_ms=100) as batcher:
        futures = [batcher.submit(request(0, i)) for i in range(2)]
        for fut in futures:
            with pytest.raises(BatchOutputError, match=r"shape \(1, 9\) for a batch of 2 rows"):
                fut.result(TIMEOUT)
        mini = np.stack([request(1, 0)])  # (1, D): a batch of one is fine
        assert np.array_equal(batcher(mini), np_model(mini))


async def test_async_infer_from_many_coroutines() -> None:
    rec = Recorder()
    with InferenceBatcher(rec, (D,), max_wait_ms=50.0, name="async") as batcher:

        async def session(sid: int) -> list[np.ndarray]:
            return [await batcher.infer(request(sid, i)) for i in range(5)]

        results = await asyncio.gather(*(session(s) for s in range(20)))
        stats = batcher.stats
    for sid, ys in enumerate(results):
        for i, y in enumerate(ys):
            assert np.array_equal(y, unbatched(request(sid, i)))
    assert stats.requests == 100
    assert stats.max_batch_size > 1  # coroutines awaiting together share a call


def test_close_fails_queued_requests_and_refuses_new_ones() -> None:
    gate = Gate()
    batcher = InferenceBatcher(gate, (D,), name="closing")
    in_flight = batcher.submit(request(0, 0))
    assert gate.entered.wait(TIMEOUT)
    queued = [batcher.submit(request(0, i)) for i in (1, 2)]
    closer = threading.Thread(target=batcher.close)
    closer.start()  # blocks until the batch in flight is done
    for fut in queued:
        with pytest.raises(BatcherClosedError):
            fut.result(TIMEOUT)
    assert not in_flight.done()
    gate.release.set()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert np.array_equal(in_flight.result(TIMEOUT), unbatched(request(0, 0)))
    with pytest.raises(BatcherClosedError):
        batcher.submit(request(0, 3))
    batcher.close()  # idempotent
    assert gate.sizes == [1]


def test_context_manager_closes() -> None:
    with InferenceBatcher(np_model, (D,), name="ctx") as batcher:
        assert np.array_equal(batcher(request(0, 0)), unbatched(request(0, 0)))
    with pytest.raises(BatcherClosedError, match="ctx"):
        batcher.submit(request(0, 1))


def test_cancelled_request_is_skipped() -> None:
    gate = Gate()
    with InferenceBatcher(gate, (D,), name="cancel") as batcher:
        batcher.submit(request(0, 0))
        assert gate.entered.wait(TIMEOUT)
        doomed: Future[np.ndarray] = batcher.submit(request(0, 1))
        kept = batcher.submit(request(0, 2))
        assert doomed.cancel()
        gate.release.set()
        assert np.array_equal(kept.result(TIMEOUT), unbatched(request(0, 2)))
    assert gate.sizes == [1, 1]
    assert not np.any(np.concatenate(gate.inputs)[:, 1] == 1)  # row 1 never reached fn


def test_torch_mlp_matches_unbatched() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(D, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16)
    ).eval()

    def torch_fn(x: np.ndarray) -> np.ndarray:  # (B, D) -> (B, 16)
        with torch.no_grad():
            return mlp(torch.from_numpy(x)).numpy()

    with InferenceBatcher(torch_fn, (D,), name="mlp") as batcher:

        def session(tid: int) -> None:
            xs = [request(tid, i, seed=1) for i in range(25)]
            futures = [batcher.submit(x) for x in xs]
            for x, fut in zip(xs, futures, strict=True):
                y = fut.result(TIMEOUT)
                ref = torch_fn(x[None])[0]
                assert y.shape == (16,) and y.dtype == np.float32
                np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)

        run_threads(8, session)
        stats = batcher.stats
    assert stats.requests == 200 and stats.max_batch_size > 1


def test_two_workers_run_two_batches_at_once() -> None:
    """workers=2: while one batch runs, the next is gathered and run by the other worker
    (on a CPU, one batch per core). Each call takes 0.2 s; two one-row batches end in about
    0.2 s with two workers, 0.4 s with one."""
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(x: np.ndarray) -> np.ndarray:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return x * 2

    for workers, want in ((1, 1), (2, 2)):
        most[0] = 0
        with InferenceBatcher(slow, (D,), max_batch=1, max_wait_ms=0, workers=workers) as b:
            futures = [b.submit(np.full(D, k, np.float32)) for k in range(2)]
            for k, f in enumerate(futures):
                assert np.array_equal(f.result(TIMEOUT), np.full(D, 2 * k, np.float32))
        assert most[0] == want
    with pytest.raises(ValueError, match="workers"):
        InferenceBatcher(slow, (D,), workers=0)
