"""ONNX Runtime sessions as dermsight runs them: one for any input shape, plus a few specialised to
the shapes of single-image runs.

The exported network has symbolic batch, height and width (``train.export``), so one session
runs batches of any size and the heatmap's whole-image frames (``camgrid``). ONNX Runtime plans a
run with every dimension known faster: on the shipped model, 160 x 160 and 144 x 144 single-image
runs take about 17-19 % less time in a session whose symbolic dimensions are fixed by
``SessionOptions.add_free_dimension_override_by_name``, with bit-identical outputs (measured here;
the README's benchmarks show the effect on the API). A request runs one image at the
classification size and, for the heatmap, one at the shifted frame's size, so ``ModelSession``
keeps a session per single-image shape for the first ``max_fixed`` shapes it sees (about 16 MB
each) and runs every other shape, and every batch, in the shape-agnostic session.

``ModelSession`` answers ``run``, ``get_inputs`` and ``get_outputs`` as an
``onnxruntime.InferenceSession`` does, so callers need not know which session ran; ``output_dim``
reads one output's declared size (the facade checks the features' width against the bundle's).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: single-image shapes given a session of their own (the classification and the heatmap's
#: shifted frame of a square image take two; other aspect ratios take two more)
MAX_FIXED = 4

#: the least ``max_threads`` gives, whatever the number of CPU cores
MIN_THREAD_BOUND = 64


def max_threads() -> int:
    """The most ONNX Runtime threads per run dermsight accepts: 4 per CPU core, at least
    ``MIN_THREAD_BOUND``. Threads beyond the cores do not speed a run up, and ONNX Runtime
    starts each one when the session is made (a million ran the process out of memory)."""
    return max(MIN_THREAD_BOUND, 4 * (os.cpu_count() or 1))


def threads_refusal(threads: int) -> str | None:
    """Why ``threads`` (a whole number) is too many for one run, or None when it is not."""
    bound = max_threads()
    if threads <= bound:
        return None
    return (f"threads={threads} is more than the {bound} dermsight accepts (4 per CPU core, "
            f"at least {MIN_THREAD_BOUND}; {os.cpu_count() or 1} cores here); threads "
            "beyond the cores do not speed a run up")


def ort_session(model: str | Path | bytes, threads: int | None = None,
                fixed_dims: Mapping[str, int] | None = None) -> Any:
    """An ONNX Runtime CPU session as dermsight runs one (``threads`` intra-op threads), with
    the symbolic dimensions named in ``fixed_dims`` fixed to the values given."""
    if threads and (why := threads_refusal(threads)) is not None:  # before ONNX Runtime
        raise ValueError(why)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    for name, value in (fixed_dims or {}).items():
        opts.add_free_dimension_override_by_name(name, int(value))
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except _unloadable() as exc:
        from dermsight.bundle import BundleError

        what = "the ONNX model" if isinstance(model, bytes) else f"the ONNX file {model}"
        raise BundleError(f"{what} is unreadable (ONNX Runtime cannot load it): "
                          f"{_reason(exc)}") from exc


#: ONNX Runtime's message: "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from
#: /b/model.onnx failed:Protobuf parsing failed."
_ORT_MESSAGE = re.compile(
    r"\[ONNXRuntimeError\] : \d+ : (\w+) : (?:Load model from .* failed:)?(.*)")


def _reason(exc: Exception) -> str:
    """ONNX Runtime's error on one line, without its preamble: "INVALID_PROTOBUF: Protobuf
    parsing failed."."""
    text = " ".join(str(exc).split())
    m = _ORT_MESSAGE.fullmatch(text)
    return f"{m[1]}: {m[2].strip()}" if m else text


def _unloadable() -> tuple[type[Exception], ...]:
    """What ONNX Runtime raises for a model file it cannot load (truncated, not ONNX, an
    unknown operator, ...)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.Fail, state.InvalidArgument, state.InvalidGraph, state.InvalidProtobuf,
            state.NoSuchFile, state.NotImplemented, state.RuntimeException)


class ModelSession:
    """An ONNX model ready to run: the shape-agnostic session, and sessions with every symbolic
    dimension fixed for up to ``max_fixed`` single-image input shapes (made on first use)."""

    def __init__(self, model: str | Path | bytes, threads: int | None = None,
                 max_fixed: int = MAX_FIXED) -> None:
        self.model = model
        self.threads = threads
        self.max_fixed = max_fixed
        self.dynamic = ort_session(model, threads)
        #: per input: the names of its symbolic dimensions by axis
        self._symbolic = {i.name: {ax: d for ax, d in enumerate(i.shape) if isinstance(d, str)}
                          for i in self.dynamic.get_inputs()}
        self._fixed: dict[tuple[tuple[str, int], ...], Any] = {}
        self._lock = threading.Lock()

    def get_inputs(self) -> Any:
        return self.dynamic.get_inputs()

    def get_outputs(self) -> Any:
        return self.dynamic.get_outputs()

    def output_dim(self, name: str, axis: int) -> int | None:
        """The size of axis ``axis`` of output ``name`` as the model declares it (with what
        ONNX Runtime's shape inference adds), from the metadata alone: nothing is run. None
        when that axis is symbolic or unknown, or there is no such output."""
        for out in self.dynamic.get_outputs():
            if out.name == name:
                shape = out.shape or []
                dim = shape[axis] if 0 <= axis < len(shape) else None
                return dim if isinstance(dim, int) else None
        return None

    def dims(self, feeds: Mapping[str, np.ndarray]) -> tuple[tuple[str, int], ...] | None:
        """The values the feeds give the symbolic dimensions, when the run is a single image
        and every input agrees on them; None otherwise (the shape-agnostic session runs it)."""
        values: dict[str, int] = {}
        for name, axes in self._symbolic.items():
            if name not in feeds:
                return None
            shape = np.shape(feeds[name])
            for ax, dim in axes.items():
                if ax >= len(shape) or values.setdefault(dim, shape[ax]) != shape[ax]:
                    return None
        if not values or any(shape[0] != 1 for shape in (np.shape(v) for v in feeds.values())):
            return None
        return tuple(sorted(values.items()))

    def session_for(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """The session that runs these feeds: a fixed-shape one when there is (or may be made)
        one for their shape, else the shape-agnostic one."""
        key = self.dims(feeds)
        if key is None:
            return self.dynamic
        session = self._fixed.get(key)
        if session is not None:
            return session
        with self._lock:
            if key not in self._fixed and len(self._fixed) < self.max_fixed:
                self._fixed[key] = ort_session(self.model, self.threads, dict(key))
            return self._fixed.get(key, self.dynamic)

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]
            ) -> list[np.ndarray]:
        return list(self.session_for(feeds).run(output_names, dict(feeds)))

    @property
    def fixed_shapes(self) -> list[dict[str, int]]:
        """The single-image shapes that have a session of their own (for tests and logs)."""
        return [dict(k) for k in self._fixed]
