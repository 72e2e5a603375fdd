"""Seed-format RCA payloads with the matrix row each one is, written by hand from the playbook.

The RCA Lambda's payload (``{"anomalies": [...], "metrics": {...}}``) as operators send it:
every row of the response matrix, both sides of the error boundary (10 errors is "<10",
11 is ">10"), symptoms that come together (CPU with a few errors, memory with CPU, many errors
with slow responses), units written differently (ms, no unit) and optional ECS context. None of
them comes from the simulator, so they test the matrix's semantics, not what a model learnt.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeedCase:
    name: str
    payload: dict
    cause: str
    covers: str          # the matrix row or boundary it checks, for the report


def _p(anomalies: list, metrics: dict | None = None, context: dict | None = None) -> dict:
    out: dict = {"anomalies": anomalies, "metrics": metrics or {}}
    if context:
        out["context"] = context
    return out


SEED_CASES: tuple[SeedCase, ...] = (
    # High CPU (no errors): MEDIUM, scale up
    SeedCase("seed example", _p(["CPU: 60% (expected 4%)"], {"cpu_utilization": 60}), "high_cpu", "high_cpu"),
    SeedCase("cpu 85", _p(["CPU: 85% (expected 30%)"], {"cpu_utilization": 85, "error_count": 0}),
             "high_cpu", "high_cpu"),
    SeedCase("cpu with load", _p(["CPU: 92% (expected 35%)", "Requests: 9000 (expected 4000)"],
                                 {"cpu_utilization": 92, "request_count": 9000}), "high_cpu", "high_cpu"),
    SeedCase("cpu with queueing", _p(["CPU: 88% (expected 30%)", "Response time: 0.45s (expected 0.15s)"]),
             "high_cpu", "high_cpu"),
    SeedCase("cpu no unit", _p(["CPU: 75 (expected 25)"]), "high_cpu", "high_cpu"),
    # High CPU (with errors): HIGH, scale up
    SeedCase("cpu 85 with 3 errors", _p(["CPU: 85% (expected 30%)", "Errors: 3 (expected 0)"],
                                        {"cpu_utilization": 85, "error_count": 3}),
             "high_cpu_with_errors", "high_cpu_with_errors, few errors"),
    SeedCase("cpu 92 with 8 errors", _p(["CPU: 92% (expected 35%)", "Errors: 8 (expected 0)"]),
             "high_cpu_with_errors", "high_cpu_with_errors, few errors"),
    SeedCase("cpu 90 with 10 errors", _p(["CPU: 90% (expected 30%)", "Errors: 10 (expected 0)"]),
             "high_cpu_with_errors", "high_cpu_with_errors, boundary 10"),
    SeedCase("overload 31 errors", _p(["Errors: 31 (expected 0)", "CPU: 41% (expected 28%)"]),
             "high_cpu_with_errors", "high_cpu_with_errors, many errors"),
    SeedCase("overload slow", _p(["CPU: 95% (expected 40%)", "Errors: 60 (expected 1)",
                                  "Latency: 1200ms (expected 150ms)"]),
             "high_cpu_with_errors", "high_cpu_with_errors, many errors"),
    # Memory leak (OOM): CRITICAL, restart
    SeedCase("memory 99 with cpu", _p(["Memory: 99% (expected 45%)", "CPU: 70% (expected 30%)"],
                                      {"memory_utilization": 99, "cpu_utilization": 70}),
             "memory_leak", "memory_leak, CPU dragged up"),
    SeedCase("memory 92", _p(["Memory: 92% (expected 50%)"], {"memory_utilization": 92}),
             "memory_leak", "memory_leak"),
    SeedCase("memory 97 oom", _p(["Memory: 97% (expected 40%)"], context={"oom_stopped_tasks": 2}),
             "memory_leak", "memory_leak, OOM kills"),
    SeedCase("memory with slow gc", _p(["Memory: 95% (expected 48%)", "Response time: 0.6s (expected 0.2s)",
                                        "CPU: 55% (expected 30%)"]), "memory_leak", "memory_leak, GC"),
    SeedCase("memory 88", _p(["Memory: 88% (expected 42%)"],
                             {"memory_utilization": 88, "cpu_utilization": 31}),
             "memory_leak", "memory_leak"),
    # High error rate (<10 errors): HIGH, alert only
    SeedCase("errors 5", _p(["Errors: 5 (expected 0)"], {"error_count": 5}), "error_rate_low",
             "error_rate_low"),
    SeedCase("errors 9", _p(["Errors: 9 (expected 0)"]), "error_rate_low", "error_rate_low"),
    SeedCase("errors 10", _p(["Errors: 10 (expected 0)"], {"error_count": 10}), "error_rate_low",
             "boundary: 10 is not more than 10"),
    SeedCase("errors 3 slow", _p(["Errors: 3 (expected 0)", "Response time: 1.5s (expected 0.2s)"]),
             "error_rate_low", "error_rate_low with slow responses"),
    SeedCase("5xx 7", _p(["5xx: 7 (expected 1)"]), "error_rate_low", "error_rate_low"),
    # High error rate (>10 errors): CRITICAL, roll back
    SeedCase("errors 11", _p(["Errors: 11 (expected 0)"], {"error_count": 11}), "error_rate_high",
             "boundary: 11 is more than 10"),
    SeedCase("errors 25", _p(["Errors: 25 (expected 0)"]), "error_rate_high", "error_rate_high"),
    SeedCase("errors 32 deploy", _p(["Errors: 32 (expected 0)"], context={"minutes_since_deployment": 4}),
             "error_rate_high", "error_rate_high, recent deployment"),
    SeedCase("errors 40 slow", _p(["Errors: 40 (expected 0)", "Response time: 1.8s (expected 0.2s)"]),
             "error_rate_high", "error_rate_high with slow responses"),
    SeedCase("errors 150 latency ms", _p(["Errors: 150 (expected 2)", "Latency: 900ms (expected 120ms)"],
                                         {"error_count": 150, "response_time": 0.9}),
             "error_rate_high", "error_rate_high with slow responses"),
    SeedCase("errors 12 cpu normal", _p(["Errors: 12 (expected 0)"],
                                        {"error_count": 12, "cpu_utilization": 30}),
             "error_rate_high", "boundary: 12"),
    # Slow response: MEDIUM, scale up
    SeedCase("slow 0.92", _p(["Response time: 0.92s (expected 0.14s)"]), "slow_response", "slow_response"),
    SeedCase("latency ms", _p(["Latency: 2500ms (expected 200ms)"], {"response_time": 2.5}),
             "slow_response", "slow_response"),
    SeedCase("slow no errors", _p(["Response time: 1.2s (expected 0.15s)"],
                                  {"response_time": 1.2, "error_count": 0, "cpu_utilization": 30}),
             "slow_response", "slow_response"),
    SeedCase("slow structured", _p([{"metric": "response_time", "value": 0.8, "expected": 0.1}]),
             "slow_response", "slow_response"),
    SeedCase("slow with requests", _p(["Response time: 0.7s (expected 0.2s)",
                                       "Requests: 5200 (expected 5000)"]),
             "slow_response", "slow_response"),
)
