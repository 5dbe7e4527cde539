"""A steady, bounded HTTP load on loopback: N keep-alive clients sending at a fixed total rate.

Used by the traffic-switch tests and by bench/rollback.py. Every request is recorded with when
it was sent and answered, its status and the release that answered (X-Release-Id). LoadProcess runs
one in a process of its own, so that a benchmark's figure is not its load clients' fight for the GIL
(perf_counter is the system's monotonic clock, the same in every process).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from types import TracebackType

import numpy as np
import urllib3

from serving import oip

# The linear test model (tests/serving/onnx_models.py) over the Open Inference Protocol.
LINEAR_INFER = oip.infer_path("linear")
LINEAR_BODY = oip.request_document({"x": np.array([[1, 2, 3, 4]], dtype=np.float32)})


@dataclass(frozen=True)
class Outcome:
    sent: float  # time.perf_counter() when the request was sent
    done: float
    status: int | None  # None when no HTTP answer came back
    release: str | None


class Outcomes:
    outcomes: list[Outcome]

    @property
    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.status != 200]

    def sent_after(self, moment: float) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.sent >= moment]


class SteadyLoad(Outcomes):
    def __init__(
        self, url: str, rate: float = 100.0, clients: int = 4, body: dict | None = None, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.interval = clients / rate
        self.clients = clients
        self.body = body or LINEAR_BODY
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def body(self) -> dict:
        return self._body

    @body.setter
    def body(self, document: dict) -> None:
        """Changing the body mid-run (a test injecting a fault) takes effect with the next request."""
        self._body, self._encoded = document, json.dumps(document).encode()

    def _client(self, offset: float) -> None:
        # urllib3 without requests on top: half the CPU per request (0.7 ms against 1.5 ms, measured
        # here), so that a benchmark's load clients take less of the machine they measure; a keep-alive
        # connection the server closed is opened again before the next request, as requests does.
        url = urllib3.util.parse_url(self.url)
        headers = {"Content-Type": "application/json"}
        with urllib3.HTTPConnectionPool(url.host, url.port, maxsize=1, retries=False,
                                        timeout=urllib3.Timeout(self.timeout)) as pool:
            due = time.perf_counter() + offset
            while not self._stop.is_set():
                time.sleep(max(0.0, due - time.perf_counter()))
                due += self.interval
                sent = time.perf_counter()
                try:
                    answer = pool.request("POST", url.request_uri, body=self._encoded, headers=headers)
                    status, release = answer.status, answer.headers.get("X-Release-Id")
                except urllib3.exceptions.HTTPError:
                    status, release = None, None
                self.outcomes.append(Outcome(sent, time.perf_counter(), status, release))

    def __enter__(self) -> SteadyLoad:
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, args=(index * self.interval / self.clients,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 1)


def _load_in_process(url: str, rate: float, clients: int, stop: Event, results: Connection) -> None:
    with SteadyLoad(url, rate=rate, clients=clients) as load:
        results.send("started")
        stop.wait()
    results.send(load.outcomes)


class LoadProcess(Outcomes):
    """A SteadyLoad in a forked process of its own; its outcomes come back when it stops."""

    def __init__(self, url: str, rate: float = 100.0, clients: int = 4) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_load_in_process, args=(url, rate, clients, self._stop, sender),
                                        daemon=True)
        self.outcomes: list[Outcome] = []

    def __enter__(self) -> LoadProcess:
        self._process.start()
        self._results.recv()  # its clients are sending
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self.outcomes = self._results.recv()
        self._process.join(timeout=10)
