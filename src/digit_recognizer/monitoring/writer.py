"""Writing the log off the request path: a bounded queue, one thread, batched inserts.

A full queue or a database that is down never holds a request up: the records are dropped,
counted and said in one line. ``close`` (SIGTERM's graceful shutdown) writes what waits.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from digit_recognizer.monitoring.log import AnswerBatch, PredictionLog, redacted

_CLOSE = None  # the queue's end marker


class LogWriter:
    """Queue answers from any thread, a request's rows as one item; a daemon thread inserts
    them in batches of about ``batch_size`` records. ``queue_size`` counts records."""

    def __init__(
        self,
        log: PredictionLog,
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
        on_drop: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.log = log
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.dropped = 0
        self.written = 0
        self._on_drop = on_drop
        self.queue_size = queue_size
        self._queued = 0  # records waiting
        self._queue: queue.Queue[AnswerBatch | None] = queue.Queue()
        self._lock = threading.Lock()
        self._last_complaint = 0.0
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()

    def submit(self, answers: AnswerBatch) -> None:
        """Queue a request's records without waiting; past ``queue_size`` they are dropped."""
        with self._lock:
            fits = self._queued + len(answers) <= self.queue_size
            if fits:
                self._queued += len(answers)
        if not fits:
            self._drop(len(answers), "the queue is full (monitoring.queue_size)")
            return
        self._queue.put(answers)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(_CLOSE)
        self._thread.join(timeout)

    def _drop(self, count: int, reason: str) -> None:
        with self._lock:
            self.dropped += count
            now = time.monotonic()
            speak = now - self._last_complaint > 10.0  # one line per 10 s, not one per request
            if speak:
                self._last_complaint = now
        self._on_drop(count)
        if speak:
            print(
                f"serve: prediction log dropped {count} record(s): {reason} "
                f"({self.dropped} dropped so far)",
                flush=True,
            )

    def _drain(self) -> None:
        """Insert when about ``batch_size`` records wait or the first has waited
        ``flush_seconds``."""
        closing = False
        while not closing:
            first = self._queue.get()
            if first is _CLOSE:
                return
            batch, records = [first], len(first)
            deadline = time.monotonic() + self.flush_seconds
            while records < self.batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is _CLOSE:
                    closing = True
                    break
                batch.append(item)
                records += len(item)
            with self._lock:
                self._queued -= records
            self._write(batch, records)

    def _write(self, batch: list[AnswerBatch], records: int) -> None:
        try:
            self.log.insert(batch)
        except Exception as error:  # a store that is down must not stop serving
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            self._drop(records, f"{redacted(self.log.url)}: {first_line[:200]}")
            return
        with self._lock:
            self.written += records
