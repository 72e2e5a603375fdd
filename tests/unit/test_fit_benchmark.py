"""The training benchmark's meter: the CPU time of the worker processes is the fit's."""

import multiprocessing
import time

from training.fit_benchmark import ProcessMeter


def _burn(seconds: float, report) -> None:
    """Spend about ``seconds`` of CPU, then send how much was spent."""
    started = time.process_time()
    while time.process_time() - started < seconds:
        sum(i * i for i in range(10_000))
    report.send(time.process_time())


def test_the_meter_counts_a_worker_started_after_it():
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    with ProcessMeter(interval=0.05) as meter:
        worker = context.Process(target=_burn, args=(1.0, send))
        worker.start()
        spent = receive.recv()
        time.sleep(0.2)  # a sample after the burn, before the worker exits
        worker.join()
    assert meter.cpu_seconds >= 0.8 * spent
    assert meter.peak > 0
