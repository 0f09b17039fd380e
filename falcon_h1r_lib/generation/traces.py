"""One record per sampled completion, and its Parquet file format.

Every later stage (RL rollouts, evaluation, DeepConf) reads these records, so they carry what DeepConf
needs: the per-token top-k log-probabilities (k = 20 in DeepConf [P] App. G.3) and the sampled token's
own log-probability. Both are RAW: `log_softmax` of the model's logits before temperature, top-p, or any
other processing, as vLLM V1's default `logprobs_mode="raw_logprobs"` returns them, so temperature 0.6
does not enter the confidence (reference deepconf.md §1.2).

On disk: Parquet with an explicit pyarrow schema, per-token arrays flattened (`topk_*` has n_tokens * k
values, row-major by position), a schema version in the file metadata; never pickle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FINISH_REASONS = ("eos", "length", "stopped")  # a stop token / max_new_tokens / ended early by a stop hook
SCHEMA_VERSION = "1"
_META_VERSION = b"falcon_h1r.trace_schema_version"
_META_LOGPROBS = b"falcon_h1r.logprobs"
_META_USER = b"falcon_h1r.metadata"
LOGPROBS_NOTE = "raw: log_softmax of the model logits before temperature, top-p or any logits processor"

TRACE_SCHEMA = pa.schema(
    [
        pa.field("problem_id", pa.string(), nullable=False),
        pa.field("sample_index", pa.int32(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),  # the run's root seed (sampling.sample_seed derives)
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
        pa.field("finish_reason", pa.string(), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),  # generated tokens, the stop token included
        pa.field("n_prompt_tokens", pa.int32(), nullable=False),
        pa.field("topk", pa.int32(), nullable=False),  # k: top-k entries kept per position
        pa.field("token_ids", pa.large_list(pa.int32()), nullable=False),  # (n_tokens,)
        pa.field("token_logprobs", pa.large_list(pa.float32()), nullable=False),  # (n_tokens,)
        pa.field("topk_ids", pa.large_list(pa.int32()), nullable=False),  # (n_tokens * k,) row-major
        pa.field("topk_logprobs", pa.large_list(pa.float32()), nullable=False),  # (n_tokens * k,)
    ]
)


def _as_array(value, dtype, name: str, problem_id: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros(arr.shape if arr.ndim else (0,), dtype=dtype)
    if dtype is np.int32 and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"trace {problem_id!r}: {name} must hold integers, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _rows(arr: np.ndarray, n: int, name: str, problem_id: str) -> np.ndarray:
    """(n, k) view of a per-position array given as (n, k) or flat (n * k,)."""
    if arr.ndim == 2 and arr.shape[0] == n:
        return arr
    if arr.ndim == 1 and n == 0 and arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim == 1 and n > 0 and arr.size % n == 0:
        return arr.reshape(n, -1)
    raise ValueError(f"trace {problem_id!r}: {name} has shape {arr.shape}, expected ({n}, k)")


@dataclass(eq=False)
class Trace:
    """One sampled completion. Arrays: token_ids/token_logprobs (n,), topk_ids/topk_logprobs (n, k)."""

    problem_id: str
    sample_index: int
    seed: int
    prompt: str
    completion: str
    token_ids: np.ndarray  # (n,) int32, the stop token included when finish_reason == "eos"
    token_logprobs: np.ndarray  # (n,) float32, raw log p(sampled token)
    topk_ids: np.ndarray  # (n, k) int32, sorted by decreasing raw log-prob
    topk_logprobs: np.ndarray  # (n, k) float32, raw
    finish_reason: str
    n_prompt_tokens: int = 0
    extra: dict = field(default_factory=dict)  # in-memory only (e.g. a backend's stop_reason); not written

    def __post_init__(self) -> None:
        pid = self.problem_id
        if not isinstance(pid, str):
            raise TypeError(f"trace problem_id must be a str, got {type(pid).__name__} {pid!r}")
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"trace {pid!r}: finish_reason {self.finish_reason!r} not in {FINISH_REASONS}")
        self.token_ids = _as_array(self.token_ids, np.int32, "token_ids", pid)
        self.token_logprobs = _as_array(self.token_logprobs, np.float32, "token_logprobs", pid)
        n = len(self.token_ids)
        self.topk_ids = _rows(_as_array(self.topk_ids, np.int32, "topk_ids", pid), n, "topk_ids", pid)
        self.topk_logprobs = _rows(_as_array(self.topk_logprobs, np.float32, "topk_logprobs", pid), n,
                                   "topk_logprobs", pid)
        if self.token_logprobs.shape != (n,):
            raise ValueError(f"trace {pid!r}: token_logprobs has shape {self.token_logprobs.shape}, "
                             f"expected ({n},) like token_ids")
        if self.topk_ids.shape != self.topk_logprobs.shape:
            raise ValueError(f"trace {pid!r}: topk_ids {self.topk_ids.shape} and topk_logprobs "
                             f"{self.topk_logprobs.shape} differ in shape")

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def topk(self) -> int:
        return self.topk_ids.shape[1]

    def __eq__(self, other: object) -> bool:
        """Exact equality; float arrays compare bit for bit (so NaN == NaN and -0.0 != 0.0)."""
        if not isinstance(other, Trace):
            return NotImplemented
        scalars = ("problem_id", "sample_index", "seed", "prompt", "completion", "finish_reason",
                   "n_prompt_tokens")
        if any(getattr(self, s) != getattr(other, s) for s in scalars):
            return False
        return (_bits_equal(self.token_ids, other.token_ids)
                and _bits_equal(self.token_logprobs, other.token_logprobs)
                and _bits_equal(self.topk_ids, other.topk_ids)
                and _bits_equal(self.topk_logprobs, other.topk_logprobs))

    __hash__ = None  # mutable arrays: not hashable


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _list_array(parts: Sequence[np.ndarray], value_type: pa.DataType, dtype) -> pa.LargeListArray:
    lengths = np.fromiter((p.size for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate([p.reshape(-1) for p in parts]) if parts else np.zeros(0, dtype)
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()),
                                         pa.array(values.astype(dtype, copy=False), value_type))


def traces_to_table(traces: Sequence[Trace], metadata: Mapping[str, object] | None = None) -> pa.Table:
    """An Arrow table in `TRACE_SCHEMA`; `metadata` (JSON-able, e.g. model and sampling) goes in the file."""
    for i, t in enumerate(traces):
        if not isinstance(t, Trace):
            raise TypeError(f"traces[{i}] is {type(t).__name__}, expected Trace")
    columns = [
        pa.array([t.problem_id for t in traces], pa.string()),
        pa.array([t.sample_index for t in traces], pa.int32()),
        pa.array([t.seed for t in traces], pa.int64()),
        pa.array([t.prompt for t in traces], pa.string()),
        pa.array([t.completion for t in traces], pa.string()),
        pa.array([t.finish_reason for t in traces], pa.string()),
        pa.array([t.n_tokens for t in traces], pa.int32()),
        pa.array([t.n_prompt_tokens for t in traces], pa.int32()),
        pa.array([t.topk for t in traces], pa.int32()),
        _list_array([t.token_ids for t in traces], pa.int32(), np.int32),
        _list_array([t.token_logprobs for t in traces], pa.float32(), np.float32),
        _list_array([t.topk_ids for t in traces], pa.int32(), np.int32),
        _list_array([t.topk_logprobs for t in traces], pa.float32(), np.float32),
    ]
    meta = {_META_VERSION: SCHEMA_VERSION.encode(), _META_LOGPROBS: LOGPROBS_NOTE.encode(),
            _META_USER: json.dumps(dict(metadata or {}), sort_keys=True).encode()}
    return pa.Table.from_arrays(columns, schema=TRACE_SCHEMA.with_metadata(meta))


def write_traces(traces: Iterable[Trace], path: str | os.PathLike,
                 metadata: Mapping[str, object] | None = None) -> Path:
    """Write traces to one Parquet file (zstd); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(traces_to_table(list(traces), metadata), path, compression="zstd")
    return path


def read_traces_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata stored by `write_traces`, plus `schema_version` and the log-prob note."""
    meta = pq.read_schema(path).metadata or {}
    _check_version(meta, path)
    return {**json.loads(meta.get(_META_USER, b"{}")), "schema_version": meta[_META_VERSION].decode(),
            "logprobs": meta.get(_META_LOGPROBS, b"").decode()}


def _check_version(meta: Mapping[bytes, bytes], path) -> None:
    version = meta.get(_META_VERSION)
    if version is None:
        raise ValueError(f"{path}: no {_META_VERSION.decode()!r} in the Parquet metadata: not a trace file")
    if version.decode() != SCHEMA_VERSION:
        raise ValueError(f"{path}: trace schema version {version.decode()!r}, this code reads {SCHEMA_VERSION!r}")


def _split(column: pa.ChunkedArray, np_dtype) -> tuple[np.ndarray, np.ndarray]:
    arr = column.combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False).astype(np_dtype, copy=False)
    return offsets - offsets[0], values[offsets[0]:offsets[-1]]


def read_traces(path: str | os.PathLike) -> list[Trace]:
    """Read a file written by `write_traces`, exactly (floats bit for bit)."""
    table = pq.read_table(path)
    _check_version(table.schema.metadata or {}, path)
    expected = {f.name: f.type for f in TRACE_SCHEMA}
    found = {f.name: f.type for f in table.schema}
    for name, typ in expected.items():
        if found.get(name) != typ:
            raise ValueError(f"{path}: column {name!r} has type {found.get(name)}, expected {typ}")
    cols = {name: table.column(name).to_pylist() for name in
            ("problem_id", "sample_index", "seed", "prompt", "completion", "finish_reason", "n_tokens",
             "n_prompt_tokens", "topk")}
    flat = {"token_ids": _split(table.column("token_ids"), np.int32),
            "token_logprobs": _split(table.column("token_logprobs"), np.float32),
            "topk_ids": _split(table.column("topk_ids"), np.int32),
            "topk_logprobs": _split(table.column("topk_logprobs"), np.float32)}
    traces = []
    for row in range(table.num_rows):
        arrays = {}
        for name, (offsets, values) in flat.items():
            arrays[name] = values[offsets[row]:offsets[row + 1]].copy()
        n, k = cols["n_tokens"][row], cols["topk"][row]
        if len(arrays["token_ids"]) != n or len(arrays["topk_ids"]) != n * k:
            raise ValueError(f"{path}: row {row} ({cols['problem_id'][row]!r}): n_tokens={n}, topk={k} but "
                             f"{len(arrays['token_ids'])} token ids and {len(arrays['topk_ids'])} top-k ids")
        traces.append(Trace(
            problem_id=cols["problem_id"][row], sample_index=cols["sample_index"][row],
            seed=cols["seed"][row], prompt=cols["prompt"][row], completion=cols["completion"][row],
            token_ids=arrays["token_ids"], token_logprobs=arrays["token_logprobs"],
            topk_ids=arrays["topk_ids"].reshape(n, k), topk_logprobs=arrays["topk_logprobs"].reshape(n, k),
            finish_reason=cols["finish_reason"][row], n_prompt_tokens=cols["n_prompt_tokens"][row]))
    return traces


__all__ = ["FINISH_REASONS", "LOGPROBS_NOTE", "SCHEMA_VERSION", "TRACE_SCHEMA", "Trace", "read_traces",
           "read_traces_metadata", "traces_to_table", "write_traces"]
