"""A fitted detector as data: a JSON description of its objects plus numpy arrays, in one ``.npz``.

Why not a pickle: unpickling calls whatever the file names, so a model file swapped on a disk or
in an artifact store runs code in every process that loads it. Here loading runs no code named
by the file:

* the file is read with ``np.load(allow_pickle=False)``: arrays of numbers, booleans, fixed-width
  strings and dates, and one uint8 array holding the JSON structure;
* the structure may only name classes from ``ALLOWED`` (this project's detectors, their plain
  config dataclasses, and the few scikit-learn estimators they hold); an object is rebuilt by
  ``cls.__new__(cls)`` and its attributes set from decoded data, so no constructor, no
  ``__setstate__`` and no ``__reduce__`` runs. Any other name is refused before anything is
  built (``CodecError`` naming it);
* pandas objects are rebuilt from their arrays (values, index, columns, dtype names from a short
  list), never from pandas' own pickle support.

What is stored is each object's attributes except ``NOT_STORED`` (the training scores: a loaded
detector scores, thresholds and explains exactly as the fitted one, but does not carry the
scores of its training minutes).

A fitted ``sklearn.ensemble.IsolationForest`` is stored as ``detection.forest.CompiledForest``
(its node arrays), which scores exactly as scikit-learn does and needs no unpickling.

The bytes are deterministic: the same fitted object gives the same file (fixed zip timestamps,
arrays named in the order met), so the same model fitted twice has the same bundle digest.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from typing import Any

import numpy as np
import pandas as pd

STRUCTURE = "__structure__"
FORMAT = 1
COMPRESS_LEVEL = 1  # zlib level of the archive (see _npz_bytes)
SAMPLE_BYTES = 1024  # what of a large member is deflated first, to see whether deflating it pays
STORE_ABOVE = 0.9  # a member whose sample deflates to more than this share of it is stored as it is

# Every class a stored detector may contain, by "module.QualifiedName". Loading refuses others.
ALLOWED = (
    "detection.zscore.RobustZDetector",
    "detection.baseline.SeasonalBaseline",
    "detection.ensemble.ServiceDetector",
    "detection.ensemble.EnsembleConfig",
    "detection.postprocess.TailCalibrator",
    "detection.postprocess.GroupingConfig",
    "detection.seasonal.SeasonalResidualDetector",
    "detection.iforest.IsolationForestDetector",
    "detection.shift.LevelShiftDetector",
    "detection.streaming.StreamingMember",
    "detection.streaming.StreamingUnivariateDetector",
    "detection.daytype.DayTypeFactor",
    "detection.metrics.MetricSpec",
    "detection.forest.CompiledForest",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.preprocessing._data.QuantileTransformer",
)
# Attributes a fitted object keeps from its own fit that a stored model does not need: every
# detector's training scores (the threshold, the calibrators and the band were derived from
# them while fitting; nothing scores with them) and the forest's training features (from which
# the ensemble attributed those scores). The scores were most of an ensemble's file: 14 days x
# 5 metrics per member, 4.2 of 16 MB before compression, a third of the time to write it.
NOT_STORED = frozenset({"training_scores_", "training_features_"})
_ARRAY_KINDS = "biufcUMm"  # bool, ints, floats, complex, fixed-width str, datetime, timedelta
_DTYPE_NAMES = {"str", "string", "object", "bool", "boolean", "category"}


class CodecError(ValueError):
    """An object that cannot be stored as data, or a file that does not describe one."""


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(name: str) -> type:
    """The class named ``name``, only if it is in ``ALLOWED`` (imported by this module, never
    by a name the file chose)."""
    if name not in ALLOWED:
        raise CodecError(f"the model state names {name!r}, which is not a type a model may hold")
    module, _, attr = name.rpartition(".")
    import importlib

    cls = getattr(importlib.import_module(module), attr)
    if not isinstance(cls, type) or _qualname(cls) != name:
        raise CodecError(f"{name!r} is not a class")
    return cls


# ----------------------------------------------------------------------------------- encoding
class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps encoded objects alive, so ids stay unique

    def array(self, value: np.ndarray, path: str) -> dict:
        if value.dtype.kind not in _ARRAY_KINDS:
            if value.dtype.kind == "O":
                return {"$ndo": list(value.shape),
                        "items": [self.node(v, f"{path}[{i}]") for i, v in enumerate(value.ravel())]}
            raise CodecError(f"cannot store an array of dtype {value.dtype} at {path}")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = np.ascontiguousarray(value)
        return {"$nd": name}

    def node(self, value: Any, path: str) -> Any:  # noqa: C901 - one branch per stored type
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, (np.bool_,)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, (float, np.floating)):
            value = float(value)
            return value if math.isfinite(value) else {"$f": repr(value)}
        if isinstance(value, np.ndarray):
            return self.array(value, path)
        if isinstance(value, list):
            return [self.node(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"$tuple": [self.node(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, dict):
            return {"$dict": [[self.node(k, f"{path} key"), self.node(v, f"{path}[{k!r}]")]
                              for k, v in value.items()]}
        if isinstance(value, pd.Timestamp):
            return {"$ts": int(value.as_unit("ns").value), "unit": value.unit,
                    "tz": None if value.tz is None else str(value.tz)}
        if isinstance(value, pd.Timedelta):
            return {"$td": int(value.as_unit("ns").value), "unit": value.unit}
        if isinstance(value, pd.Index):
            return self.index(value, path)
        if isinstance(value, pd.Series):
            return {"$series": self.values(value, path), "index": self.index(value.index, f"{path}.index"),
                    "name": self.node(value.name, f"{path}.name")}
        if isinstance(value, pd.DataFrame):
            return {"$frame": [self.values(value.iloc[:, j], f"{path}[:, {j}]")
                               for j in range(value.shape[1])],
                    "index": self.index(value.index, f"{path}.index"),
                    "columns": self.index(value.columns, f"{path}.columns")}
        return self.instance(value, path)

    def values(self, series: pd.Series, path: str) -> dict:
        return {"values": self.node(series.to_numpy(), path), "dtype": _dtype_name(series.dtype, path)}

    def index(self, index: pd.Index, path: str) -> dict:
        name = self.node(index.name, f"{path}.name")
        if isinstance(index, pd.RangeIndex):
            return {"$range": [index.start, index.stop, index.step], "name": name}
        if isinstance(index, pd.DatetimeIndex):
            return {"$dti": self.node(index.asi8, path), "unit": index.unit,
                    "tz": None if index.tz is None else str(index.tz),
                    "freq": index.freqstr if index.freq is not None else None, "name": name}
        return {"$idx": self.node(index.to_numpy(), path), "dtype": _dtype_name(index.dtype, path),
                "name": name}

    def instance(self, value: Any, path: str) -> dict:
        from sklearn.ensemble import IsolationForest

        from detection.forest import CompiledForest

        if id(value) in self.memo:
            return {"$ref": self.memo[id(value)]}
        original = value
        if isinstance(value, IsolationForest):  # stored as its node arrays (see module)
            value = CompiledForest.from_sklearn(value)
        name = _qualname(type(value))
        if name not in ALLOWED:
            raise CodecError(f"cannot store a {name} (at {path}) as model data; add it to "
                             "models.codec.ALLOWED if it holds only data")
        if hasattr(type(value), "__slots__") and not hasattr(value, "__dict__"):
            raise CodecError(f"cannot store {name} at {path}: it has no __dict__")
        number = len(self.memo)
        self.memo[id(original)] = number
        self.keep.append(original)
        state = {key: v for key, v in vars(value).items() if key not in NOT_STORED}
        return {"$obj": name, "id": number,
                "state": [[key, self.node(v, f"{path}.{key}")] for key, v in state.items()]}


def _dtype_name(dtype, path: str) -> str:
    name = str(dtype)
    if isinstance(dtype, np.dtype) and dtype.kind in _ARRAY_KINDS + "O":
        return dtype.str if dtype.kind != "O" else "object"
    if name in _DTYPE_NAMES:
        return name
    raise CodecError(f"cannot store a column of dtype {name} at {path}")


def encode(obj: Any) -> bytes:
    """The ``.npz`` bytes that describe ``obj`` (see the module docstring for what it may hold)."""
    encoder = _Encoder()
    structure = {"format": FORMAT, "root": encoder.node(obj, "model")}
    text = json.dumps(structure, sort_keys=False, separators=(",", ":"), allow_nan=False)
    arrays = {STRUCTURE: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **encoder.arrays}
    return _npz_bytes(arrays)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` archive (what ``np.savez_compressed`` writes) with fixed timestamps: same
    arrays, same bytes.

    Deflate at ``COMPRESS_LEVEL`` 1, not zlib's default 6: every fitted model is encoded once
    in the worker that fitted it, and level 6 cost 0.33 s of a 1.1 s ensemble fit (14 days x
    5 metrics) for files 4.5% smaller (4.22 MB against 4.41 MB; level 0: 16 MB). A member that
    deflate would not shrink is stored as it is (``_compress_type``); ``np.load`` reads both.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            data = member.getvalue()
            info.compress_type = _compress_type(data)
            archive.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()


def _compress_type(data: bytes) -> int:
    """``ZIP_STORED`` for a large member whose middle ``SAMPLE_BYTES`` deflate to more than
    ``STORE_ABOVE`` of their size, else ``ZIP_DEFLATED``.

    Measured values in full float precision (a metric's 5-minute means, the streaming state's
    residuals, the seasonal curves) are noise to deflate from the third byte of each number on:
    it spent ~5 ms of an ensemble's 25 ms of writing (14 days x 5 metrics) to keep 93-97% of
    them. Stored, the file is ~3% larger; tables with repeats, padding or regular steps (the
    forest's nodes, the calibrators' quantiles, timestamps) are deflated as before. The choice
    depends on the bytes only, so the same model still gives the same file.
    """
    if len(data) <= 8 * SAMPLE_BYTES:
        return zipfile.ZIP_DEFLATED
    at = (len(data) - SAMPLE_BYTES) // 2
    sample = memoryview(data)[at:at + SAMPLE_BYTES]
    deflated = len(zlib.compress(sample, COMPRESS_LEVEL))
    return zipfile.ZIP_STORED if deflated > STORE_ABOVE * SAMPLE_BYTES else zipfile.ZIP_DEFLATED


# ----------------------------------------------------------------------------------- decoding
class _Decoder:
    def __init__(self, arrays) -> None:
        self.arrays = arrays
        self.memo: dict[int, Any] = {}

    def node(self, value: Any) -> Any:  # noqa: C901 - one branch per stored type
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.node(v) for v in value]
        if not isinstance(value, dict) or len(value) == 0:
            raise CodecError(f"unexpected node {str(value)[:80]!r} in the model state")
        tag = next(iter(value))
        if tag == "$f":
            return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}[value["$f"]])
        if tag == "$nd":
            if value["$nd"] not in self.arrays:
                raise CodecError(f"the model state refers to a missing array {value['$nd']!r}")
            return self.arrays[value["$nd"]]
        if tag == "$ndo":
            out = np.empty(len(value["items"]), dtype=object)
            for i, item in enumerate(value["items"]):
                out[i] = self.node(item)
            return out.reshape([int(n) for n in value["$ndo"]])
        if tag == "$tuple":
            return tuple(self.node(v) for v in value["$tuple"])
        if tag == "$dict":
            return {_hashable(self.node(k)): self.node(v) for k, v in value["$dict"]}
        if tag == "$ts":
            ts = pd.Timestamp(int(value["$ts"]), unit="ns", tz=value["tz"])
            return ts.as_unit(value["unit"])
        if tag == "$td":
            return pd.Timedelta(int(value["$td"]), unit="ns").as_unit(value["unit"])
        if tag in ("$range", "$dti", "$idx"):
            return self.index(value)
        if tag == "$series":
            return pd.Series(self.values(value["$series"]), index=self.index(value["index"]),
                             name=_hashable(self.node(value["name"])), copy=False)
        if tag == "$frame":
            index, columns = self.index(value["index"]), self.index(value["columns"])
            data = {j: self.values(col) for j, col in enumerate(value["$frame"])}
            if len(data) != len(columns):
                raise CodecError("a stored table's columns do not match its column names")
            frame = pd.DataFrame(data, index=index) if data else pd.DataFrame(index=index)
            frame.columns = columns
            return frame
        if tag == "$ref":
            if value["$ref"] not in self.memo:
                raise CodecError(f"the model state refers to an unknown object {value['$ref']!r}")
            return self.memo[value["$ref"]]
        if tag == "$obj":
            return self.instance(value)
        raise CodecError(f"unknown node type {tag!r} in the model state")

    def values(self, node: dict):
        values = self.node(node["values"])
        return pd.array(values, dtype=_dtype(node["dtype"])) if node["dtype"] in _DTYPE_NAMES \
            else np.asarray(values, dtype=_dtype(node["dtype"]))

    def index(self, node: dict) -> pd.Index:
        name = _hashable(self.node(node.get("name")))
        if "$range" in node:
            start, stop, step = (int(v) for v in node["$range"])
            return pd.RangeIndex(start, stop, step, name=name)
        if "$dti" in node:
            values = np.asarray(self.node(node["$dti"]), dtype=np.int64)
            unit = str(node["unit"])
            if unit not in ("s", "ms", "us", "ns"):
                raise CodecError(f"unknown time unit {unit!r}")
            index = pd.DatetimeIndex(values.view(f"M8[{unit}]"), name=name)
            if node["tz"] is not None:
                index = index.tz_localize("UTC").tz_convert(node["tz"])
            if node.get("freq"):
                index = pd.DatetimeIndex(index, freq=node["freq"])
            return index
        values = self.node(node["$idx"])
        return pd.Index(values, dtype=_dtype(node["dtype"]), name=name)

    def instance(self, node: dict) -> Any:
        cls = _resolve(node["$obj"])
        obj = cls.__new__(cls)
        self.memo[node["id"]] = obj
        state = {}
        for key, value in node["state"]:
            if not isinstance(key, str):
                raise CodecError(f"attribute name {key!r} of {node['$obj']} is not a string")
            state[key] = self.node(value)
        obj.__dict__.update(state)  # frozen dataclasses too: no __setattr__ runs
        if node["$obj"] == "detection.forest.CompiledForest":  # indices it will walk: checked
            obj.__dict__.update(vars(cls.from_arrays(obj.arrays())))
        return obj


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _dtype(name: str):
    if name in _DTYPE_NAMES:
        return name
    dtype = np.dtype(name)
    if dtype.kind not in _ARRAY_KINDS:
        raise CodecError(f"dtype {name!r} is not allowed in model state")
    return dtype


def decode(data: bytes) -> Any:
    """The object ``encode`` wrote (``data`` is an ``.npz``; nothing in it is unpickled)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CodecError(f"not a model state archive ({exc})") from None
    if STRUCTURE not in arrays:
        raise CodecError("the model state archive has no structure")
    try:
        structure = json.loads(arrays.pop(STRUCTURE).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"the model state's structure is not JSON ({exc})") from None
    if not isinstance(structure, dict) or structure.get("format") != FORMAT:
        found = structure.get("format") if isinstance(structure, dict) else None
        raise CodecError(f"unknown model state format {found!r}")
    try:
        return _Decoder(arrays).node(structure["root"])
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CodecError(f"the model state is malformed ({type(exc).__name__}: {exc})") from None



