"""CloudWatch adapter: canonical metric frames in and out, through the settings' mapping."""

from __future__ import annotations

import math

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from service.settings import MetricMapping, ServiceTarget

MAX_POINTS_PER_CALL = 1440   # AWS's cap on get_metric_statistics; moto has none, AWS does
MAX_DATUMS_PER_PUT = 1000


class MetricSourceError(RuntimeError):
    """CloudWatch could not be read or written; the message says which metric and why."""


class CloudWatchMetrics:
    """Reads and writes one service's canonical metrics as a DataFrame (metrics as columns).

    Parameters
    ----------
    client : a boto3 CloudWatch client (from ``service.aws.ClientFactory``).
    metrics : canonical name -> CloudWatch mapping.
    target : the service whose dimensions fill the mapping.
    period : seconds per point.
    """

    def __init__(self, client, metrics: dict[str, MetricMapping], target: ServiceTarget,
                 period: int = 60):
        self.client = client
        self.metrics = metrics
        self.target = target
        self.period = period

    def _dimensions(self, mapping: MetricMapping) -> list[dict[str, str]]:
        return [{"Name": name, "Value": self.target.dimension_value(field)}
                for name, field in mapping.dimensions.items()]

    def read(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Every canonical metric from ``start`` (inclusive) to ``end`` (exclusive).

        Requests are chunked to AWS's 1,440 points per call. Missing minutes stay missing
        (NaN after alignment); the detectors decide what a gap means.
        """
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        columns = {name: self._read_metric(name, mapping, start, end)
                   for name, mapping in self.metrics.items()}
        frame = pd.DataFrame(columns)
        frame.index.name = "timestamp"
        return frame.sort_index()

    def _read_metric(self, name: str, mapping: MetricMapping, start: pd.Timestamp,
                     end: pd.Timestamp) -> pd.Series:
        step = pd.Timedelta(seconds=self.period * MAX_POINTS_PER_CALL)
        points: dict[pd.Timestamp, float] = {}
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + step, end)
            for dp in self._call_get(name, mapping, chunk_start, chunk_end):
                points[pd.Timestamp(dp["Timestamp"]).tz_convert("UTC")] = float(dp[mapping.statistic])
            chunk_start = chunk_end
        return pd.Series(points, dtype=float)

    def _call_get(self, name: str, mapping: MetricMapping, start, end) -> list[dict]:
        try:
            return self.client.get_metric_statistics(
                Namespace=mapping.namespace, MetricName=mapping.metric_name,
                Dimensions=self._dimensions(mapping), StartTime=start.to_pydatetime(),
                EndTime=end.to_pydatetime(), Period=self.period,
                Statistics=[mapping.statistic])["Datapoints"]
        except (ClientError, BotoCoreError) as exc:
            raise MetricSourceError(f"cannot read {name} ({mapping.namespace} "
                                    f"{mapping.metric_name}) from CloudWatch: {exc}") from None

    def write(self, frame: pd.DataFrame) -> int:
        """Put every value of ``frame`` (canonical columns) into CloudWatch; returns points sent."""
        datums = [datum for name in frame.columns if name in self.metrics
                  for datum in self._datums(name, frame[name])]
        for i in range(0, len(datums), MAX_DATUMS_PER_PUT):
            self._put(datums[i:i + MAX_DATUMS_PER_PUT])
        return len(datums)

    def _datums(self, name: str, values: pd.Series) -> list[dict]:
        mapping = self.metrics[name]
        dims = self._dimensions(mapping)
        return [{"Namespace": mapping.namespace, "MetricName": mapping.metric_name, "Dimensions": dims,
                 "Timestamp": ts.to_pydatetime(), "Value": float(v), "Unit": _unit(mapping)}
                for ts, v in values.items() if not (isinstance(v, float) and math.isnan(v))]

    def _put(self, datums: list[dict]) -> None:
        by_namespace: dict[str, list[dict]] = {}
        for d in datums:
            by_namespace.setdefault(d["Namespace"], []).append(
                {k: v for k, v in d.items() if k != "Namespace"})
        for namespace, data in by_namespace.items():
            try:
                self.client.put_metric_data(Namespace=namespace, MetricData=data)
            except (ClientError, BotoCoreError) as exc:
                raise MetricSourceError(f"cannot write metrics to CloudWatch {namespace}: {exc}") from None


def _unit(mapping: MetricMapping) -> str:
    name = mapping.metric_name
    if name.endswith("Utilization"):
        return "Percent"
    if name == "TargetResponseTime":
        return "Seconds"
    return "Count"

