"""Counts image decodes and pixel copies in every Python process, for bench/frame_path_bench.py.

Inert unless `FACEGATE_COUNT_DIR` is set. Put this directory first on PYTHONPATH and every
Python process started with that environment (the bench driver and the four services, which
inherit it) installs a `sys.setprofile`/`threading.setprofile` hook at start-up and writes
`$FACEGATE_COUNT_DIR/<process>-<pid>.json` at exit (atexit; the services exit normally on
SIGTERM) and every second once armed, so a killed process still leaves its counts. The
process name comes from the command line: `python -m services.detector` -> `detector`,
`python bench/doors_bench.py` -> `doors_bench`.

Counting window: nothing is counted until the gateway processes its first camera frame (it
creates `$FACEGATE_COUNT_DIR/armed`; other processes notice the file the next time they see a
counted event). That keeps model warm-up and the bench's enrolment out of the frame path.

The rules (simple on purpose: what matters is that both trees are counted the same way):

decodes (a full decode of compressed pixels), per process:
  - `PIL:<decoder>`: a call of Pillow's `Image._getdecoder` with a decoder other than "raw"
    (`ImageFile.load` asks for one decoder per decode; "raw" is `frombytes`, not a decode);
  - `cv2.imdecode`, `cv2.imread`: each call (c_call event);
  - `tf:<op>`: a call of TensorFlow's Python `decode_jpeg`/`decode_png`/`decode_image`.
pixel copies, per process, in bytes, under the name of what copied:
  - `ndarray.tobytes`, `ndarray.copy`: the array's `nbytes` (the bound builtin's `__self__`);
  - `np.concatenate`: the summed `nbytes` of the arrays passed to numpy's Python-level
    `concatenate` dispatcher; `np.stack`/`vstack`/`hstack` go through it, so they count here
    (once) too;
  - `np.copy`: `nbytes` of its argument;
  - `PIL.Image.copy` (what `convert` to the same mode does), `PIL.Image.tobytes` (what
    `np.asarray(image)` does): the pixels of the result;
  - `protobuf.CopyFrom(<Msg>)`, `protobuf.MergeFrom(<Msg>)`: on return, `len(data)` for an
    NDArray message, `ByteSize()` for any other message.
  A copy is a *crop* copy when its size is a whole multiple of one crop (150*150*3 bytes, or
  `$FACEGATE_COUNT_CROP_BYTES`) and a *frame* copy when it is a whole multiple of one frame
  (640*480*3, `$FACEGATE_COUNT_FRAME_BYTES`); anything else is *other*.
calls (counted, size unknown): `cv2.cvtColor`, `cv2.warpAffine` (makes an aligned crop),
  `np.frombuffer` (on a protobuf bytes field it follows a copy, see below), `bytes.join`.
units of work, to divide by:
  - `frames`: first entries of a function named `_process` in a file under a `gateway` path
    (the gateway runs it once per camera frame it takes off a door's queue; resumptions of the
    coroutine after an await are not counted);
  - `crops_embedded`: rows of the 2-D array returned by the outermost synchronous function
    named `embed` in a file under an `embedder` path (the model call).

Not visible to a profile hook, so not counted: work inside C extensions (gRPC/protobuf
serialisation and parsing; with the upb protobuf runtime, constructing a message with a bytes
or message field, assigning a bytes field, and even *reading* one -- `message.data` returns a
new copy on every access -- all copy, in C, without an event; TensorFlow's C++ side; OpenCV's
internal buffers), `np.ascontiguousarray`/`astype` (C functions whose arguments a hook cannot
see; they copy only when the input is not already contiguous/of that type), and the sizes of
`bytes.join` results.
"""

from __future__ import annotations

import atexit
import dis
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

_DIR = os.environ.get("FACEGATE_COUNT_DIR", "")
CROP_BYTES = int(os.environ.get("FACEGATE_COUNT_CROP_BYTES", 150 * 150 * 3))
FRAME_BYTES = int(os.environ.get("FACEGATE_COUNT_FRAME_BYTES", 640 * 480 * 3))

_lock = threading.Lock()
_armed = False
_decodes: dict[str, int] = {}
_copies: dict[str, dict[str, int]] = {}  # name -> {"calls", "crop_bytes", "frame_bytes", "other_bytes"}
_calls: dict[str, int] = {}
_units = {"frames": 0, "crops_embedded": 0, "embed_calls": 0}
_embed_depth: dict[int, int] = {}  # thread id -> nesting of counted `embed` calls


def _is_armed() -> bool:
    global _armed
    if not _armed and os.path.exists(os.path.join(_DIR, "armed")):
        _armed = True
    return _armed


def _arm() -> None:
    global _armed
    if not _armed:
        _armed = True
        with open(os.path.join(_DIR, "armed"), "a"):
            pass


def _bump(table: dict[str, int], key: str, n: int = 1) -> None:
    with _lock:
        table[key] = table.get(key, 0) + n


def _copied(name: str, nbytes: int) -> None:
    if nbytes <= 0 or not _is_armed():
        return
    if nbytes % CROP_BYTES == 0:
        kind = "crop_bytes"
    elif nbytes % FRAME_BYTES == 0:
        kind = "frame_bytes"
    else:
        kind = "other_bytes"
    with _lock:
        entry = _copies.setdefault(name, {"calls": 0, "crop_bytes": 0, "frame_bytes": 0, "other_bytes": 0})
        entry["calls"] += 1
        entry[kind] += nbytes


def _nbytes(value: Any) -> int:
    size = getattr(value, "nbytes", 0)
    return size if isinstance(size, int) else 0


# --- handlers of Python-level functions: (frame, event, arg) -> None ------------------------

_resume_offsets: dict[CodeType, int] = {}


def _first_resume(code: CodeType) -> int:
    """Offset of the RESUME that starts a call; a coroutine resumed after an await is past it."""
    if code not in _resume_offsets:
        _resume_offsets[code] = next(
            (i.offset for i in dis.get_instructions(code) if i.opname == "RESUME"), 0)
    return _resume_offsets[code]


def _pil_decoder(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call" and _is_armed():
        decoder = frame.f_locals.get("decoder_name")
        if decoder != "raw":
            _bump(_decodes, f"PIL:{decoder}")


def _tf_decode(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call" and _is_armed():
        _bump(_decodes, f"tf:{frame.f_code.co_name}")


def _np_concatenate(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call":
        arrays: Any = frame.f_locals.get("arrays")
        try:
            total = sum(_nbytes(a) for a in arrays)
        except TypeError:
            return
        _copied("np.concatenate", total)


def _np_copy(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call":
        _copied("np.copy", _nbytes(frame.f_locals.get("a")))


def _pil_image_result(frame: FrameType, event: str, arg: Any) -> None:
    if event != "return" or arg is None:
        return
    if isinstance(arg, bytes):
        _copied("PIL.Image.tobytes", len(arg))
    elif hasattr(arg, "getbands") and hasattr(arg, "size"):
        width, height = arg.size
        _copied("PIL.Image.copy", width * height * len(arg.getbands()))


def _gateway_process(frame: FrameType, event: str, arg: Any) -> None:
    if event == "call" and frame.f_lasti <= _first_resume(frame.f_code):
        _arm()
        _bump(_units, "frames")


def _embedder_embed(frame: FrameType, event: str, arg: Any) -> None:
    thread = threading.get_ident()
    depth = _embed_depth.get(thread, 0)
    if event == "call":
        _embed_depth[thread] = depth + 1
        return
    _embed_depth[thread] = max(depth - 1, 0)
    if depth == 1 and getattr(arg, "ndim", 0) == 2 and _is_armed():
        _bump(_units, "crops_embedded", int(arg.shape[0]))
        _bump(_units, "embed_calls")


_Handler = Callable[[FrameType, str, Any], None]
_CO_COROUTINE = 0x80


def _classify(code: CodeType) -> _Handler | None:
    """The handler for calls/returns of `code`, or None; called once per code object."""
    name, path = code.co_name, code.co_filename.replace("\\", "/")
    if name == "_getdecoder" and "/PIL/" in path:
        return _pil_decoder
    if name in ("decode_jpeg", "decode_png", "decode_image") and "/tensorflow/" in path:
        return _tf_decode
    if name == "concatenate" and "/numpy/" in path and path.endswith("multiarray.py"):
        return _np_concatenate
    if name == "copy" and "/numpy/" in path and "function_base" in path:
        return _np_copy
    if name in ("copy", "tobytes") and path.endswith("/PIL/Image.py"):
        return _pil_image_result
    if name == "_process" and "/gateway/" in path:
        return _gateway_process
    if name == "embed" and "embedder" in path and not code.co_flags & _CO_COROUTINE:
        return _embedder_embed
    return None


_python: dict[CodeType, _Handler | None] = {}


# --- handlers of C functions (c_call / c_return events): builtin -> None -------------------

def _c_decode(function: Any) -> None:
    if _is_armed():
        _bump(_decodes, f"cv2.{function.__name__}")


def _c_array_method(function: Any) -> None:
    owner = function.__self__
    if type(owner).__name__ == "ndarray":
        _copied(f"ndarray.{function.__name__}", _nbytes(owner))


_COUNTED_CALLS = {"cvtColor": "cv2.cvtColor", "warpAffine": "cv2.warpAffine", "frombuffer": "np.frombuffer"}


def _c_call_count(function: Any) -> None:
    owner = getattr(function, "__self__", None)
    if function.__name__ == "join":
        if type(owner) is bytes and _is_armed():
            _bump(_calls, "bytes.join")
    elif owner is None or type(owner).__name__ == "module":  # module functions, not methods named alike
        if _is_armed():
            _bump(_calls, _COUNTED_CALLS[function.__name__])


def _c_message_copy(function: Any) -> None:
    message = function.__self__
    descriptor = getattr(message, "DESCRIPTOR", None)
    if descriptor is None:
        return
    size = len(message.data) if descriptor.name == "NDArray" else message.ByteSize()
    _copied(f"protobuf.{function.__name__}({descriptor.name})", size)


_C_CALL: dict[str, Callable[[Any], None]] = {
    "imdecode": _c_decode, "imread": _c_decode,
    "tobytes": _c_array_method, "copy": _c_array_method,
    "cvtColor": _c_call_count, "warpAffine": _c_call_count, "frombuffer": _c_call_count, "join": _c_call_count,
}
_C_RETURN: dict[str, Callable[[Any], None]] = {"CopyFrom": _c_message_copy, "MergeFrom": _c_message_copy}


def _hook(frame: FrameType, event: str, arg: Any) -> None:
    # Runs on every call and return in the process: keep the common path to two dict look-ups.
    try:
        if event == "call" or event == "return":
            code = frame.f_code
            try:
                handler = _python[code]
            except KeyError:
                handler = _python[code] = _classify(code)
            if handler is not None:
                handler(frame, event, arg)
        elif event == "c_call":
            handler_c = _C_CALL.get(arg.__name__)
            if handler_c is not None:
                handler_c(arg)
        elif event == "c_return":
            handler_c = _C_RETURN.get(arg.__name__)
            if handler_c is not None:
                handler_c(arg)
    except Exception:  # a counter must never break the process it counts
        pass


# --- output ---------------------------------------------------------------------------------

def process_name() -> str:
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].rsplit(".", 1)[-1]
    scripts = [a for a in argv[1:] if a.endswith(".py")]
    if scripts:
        return os.path.basename(scripts[0])[:-3]
    return "python"


_write_lock = threading.Lock()
_finished = False


def _flush(final: bool = False) -> None:
    global _finished
    with _write_lock:  # one writer at a time; nothing overwrites the file atexit wrote
        if _finished:
            return
        _finished = final
        with _lock:
            report = {"process": process_name(), "pid": os.getpid(),
                      "argv": list(getattr(sys, "orig_argv", sys.argv)), "armed": _armed, "final": final,
                      "crop_bytes": CROP_BYTES, "frame_bytes": FRAME_BYTES, **_units,
                      "decodes": dict(_decodes), "copies": {k: dict(v) for k, v in _copies.items()},
                      "calls": dict(_calls)}
        path = os.path.join(_DIR, f"{report['process']}-{os.getpid()}.json")
        try:
            with open(path + ".tmp", "w") as handle:
                json.dump(report, handle, indent=1, sort_keys=True)
            os.replace(path + ".tmp", path)
        except OSError:
            pass


def _flush_every_second() -> None:
    sys.setprofile(None)  # this thread's own work is not the process's
    while True:
        time.sleep(1.0)
        if _armed:
            _flush()


def _install() -> None:
    atexit.register(_flush, final=True)  # "final": false in the file = the process did not exit normally
    threading.Thread(target=_flush_every_second, name="facegate-count-flush", daemon=True).start()
    threading.setprofile(_hook)
    sys.setprofile(_hook)


if _DIR:
    _install()
