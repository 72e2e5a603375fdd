"""A request's timestamps are parsed once per distinct list and read the same as plain lists."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from detection.zscore import RobustZDetector
from rca.payload import PayloadError
from service import timestamps
from service.api_schemas import ScoreRequest
from service.scoring import LoadedModel, Series, ServiceModels, score_series, scorer_for
from simulation.physics import ServiceShape, history

END = pd.Timestamp("2026-11-02T00:00Z")


def _body(frame: pd.DataFrame, services: dict[str, str]) -> str:
    """Every metric of each service, its timestamps written with the service's UTC offset."""
    series = []
    for service, offset in services.items():
        stamps = [t.tz_convert(offset).isoformat() for t in frame.index]
        series += [{"service": service, "metric": m, "timestamps": stamps, "values": frame[m].tolist()}
                   for m in frame.columns]
    return json.dumps({"series": series})


def _series(request: ScoreRequest) -> list[Series]:
    return [Series("c", s.service, s.metric, s.timestamps, s.values) for s in request.series]


def _plain(request: ScoreRequest) -> list[Series]:
    """The same series with their timestamps as lists of new datetime objects."""
    return [Series("c", s.service, s.metric, [t.replace() for t in s.timestamps], list(s.values))
            for s in request.series]


@pytest.fixture(scope="module")
def models() -> ServiceModels:
    """web: baseline tables; api: an ensemble (scored by the fleet scorer, on the shared index)."""
    from detection.ensemble import ServiceDetector

    past = history(END, 14, ServiceShape(), np.random.default_rng(3))
    detectors = {"web": RobustZDetector(threshold=2.0).fit(past), "api": ServiceDetector().fit(past)}
    return ServiceModels({f"c--{n}": LoadedModel(f"c--{n}", scorer_for(d), "test", n)
                          for n, d in detectors.items()})


def test_series_sending_the_same_timestamps_share_them_and_score_as_plain_lists(models) -> None:
    day = history(END + pd.Timedelta(days=1), 1, ServiceShape(), np.random.default_rng(8))
    frame = day.iloc[600:605] * 1.8   # busier than the baselines expect
    first = ScoreRequest.model_validate_json(_body(frame, {"web": "UTC", "api": "+05:30"}))
    again = ScoreRequest.model_validate_json(_body(frame, {"web": "UTC", "api": "+05:30"}))
    web, api = first.series[0].timestamps, first.series[-1].timestamps
    assert all(s.timestamps is web for s in first.series[:5])      # one service's metrics
    assert again.series[0].timestamps is web                         # a later request
    assert api is not web and list(api) == list(web)                 # the same instants, other text
    assert str(api[0].utcoffset()) == "5:30:00"                      # the offset sent is kept
    np.testing.assert_array_equal(api.seconds, [t.timestamp() for t in frame.index])
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # dumped as the list the schema declares, without a warning
        dumped = first.model_dump(mode="json")["series"][-1]["timestamps"]
    assert [pd.Timestamp(t) for t in dumped] == list(frame.index)
    shared = score_series(_series(first), models, frame.columns, 1000)
    plain = score_series(_plain(first), models, frame.columns, 1000)
    assert all(r.anomalies for r in plain)                           # the comparison means something
    assert [[a.to_dict() for a in r.anomalies] for r in shared] == \
        [[a.to_dict() for a in r.anomalies] for r in plain]
    assert shared[1].anomalies[0].timestamp.utcoffset() == pd.Timedelta(hours=5, minutes=30)


def test_timestamps_refused_once_are_refused_again(models) -> None:
    naive = {"series": [{"service": "web", "metric": "cpu_utilization",
                         "timestamps": ["2026-11-03T10:00:00", "2026-11-03T10:01:00"], "values": [1, 2]}]}
    for _ in range(2):   # what pydantic refuses is never remembered
        with pytest.raises(ValidationError, match="timezone"):
            ScoreRequest.model_validate(naive)
    repeated = json.dumps({"series": [{"service": "web", "metric": "cpu_utilization",
                                       "timestamps": ["2026-11-03T10:00:00Z"] * 2, "values": [1, 2]}]})
    for _ in range(2):   # remembered, and still not increasing
        with pytest.raises(PayloadError) as caught:
            score_series(_series(ScoreRequest.model_validate_json(repeated)), models,
                         ["cpu_utilization"], 1000)
        assert caught.value.field == "series[0].timestamps"


def test_only_short_lists_are_remembered_and_only_so_many(monkeypatch) -> None:
    monkeypatch.setattr(timestamps, "_KNOWN", {})
    monkeypatch.setattr(timestamps, "REMEMBER_LISTS", 8)
    parse = lambda value: [pd.Timestamp(v).to_pydatetime() for v in value]  # noqa: E731
    lists = [[f"2026-11-03T10:{m:02d}:00Z"] for m in range(20)]
    for value in lists:
        timestamps.remembered(value, parse)
    assert len(timestamps._KNOWN) == 8
    assert timestamps.remembered(lists[-1], parse) is timestamps.remembered(list(lists[-1]), parse)
    long = [f"2026-11-03T{h:02d}:{m:02d}:00Z" for h in range(2) for m in range(60)]
    assert timestamps.remembered(long, parse) is not timestamps.remembered(long, parse)
    assert len(timestamps._KNOWN) == 8
