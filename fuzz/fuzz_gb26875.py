"""Coverage-guided fuzzing of the GB/T 26875.3 frame and stream decoders with atheris.

    python -m fuzz.fuzz_gb26875 -max_total_time=60        # or: make fuzz (FUZZ_SECONDS=60)

Any libFuzzer option works (``-runs=``, a corpus directory, ``-dict=``...). The harness checks
what the codec promises for *any* input:

- ``decode_frame`` returns a Frame or raises FrameError, nothing else, in strict and lenient
  time modes; a Frame renders (``frame_to_json``, ``describe``) and, when its time is set,
  re-encodes to the same bytes;
- ``StreamDecoder`` fed the input in the chunks the input itself chooses returns only Frames
  and FrameErrors and never holds more than one maximal frame in its buffer;
- the same input with a correct checksum and length patched in (so the fuzzer gets past the
  envelope into the ADU parsers quickly).

A crash prints the input and saves it as ``crash-<sha1>`` in the current directory; replay it
with ``python -m fuzz.fuzz_gb26875 crash-<sha1>``. atheris is an optional dependency
(``pip install -e '.[fuzz]'``); without it the module says so and exits 2.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from drivers.gb26875.codec import (
    MAX_FRAME,
    Frame,
    FrameError,
    StreamDecoder,
    checksum,
    decode_frame,
    describe,
    encode_frame,
    frame_to_json,
)


def _check(frame: Frame, data: bytes) -> None:
    json.dumps(frame_to_json(frame), ensure_ascii=False)
    describe(frame)
    # Lenient decoding may turn a bad time into None (encoded as zeros) and text padding is
    # not kept, so only a strict, time-carrying frame promises identical bytes... and even then
    # space- vs NUL-padded descriptions re-encode differently: check the re-decode instead.
    if frame.header.time is not None:
        again = decode_frame(encode_frame(frame), strict_time=False)
        assert again == frame, (frame, again, data.hex())


def _decode(data: bytes, strict: bool) -> None:
    try:
        frame = decode_frame(data, strict_time=strict)
    except FrameError:
        return
    _check(frame, data)


def _patched(data: bytes) -> bytes:
    """``data`` turned into a well-framed candidate: start, length, checksum and end fixed."""
    adu = data[27:27 + 1024] if len(data) > 27 else b""
    head = bytearray(data[:27] if len(data) >= 27 else data.ljust(27, b"\0"))
    head[0:2] = b"@@"
    head[24:26] = len(adu).to_bytes(2, "little")
    body = bytes(head[2:]) + adu
    return b"@@" + body + bytes((checksum(body),)) + b"##"


def _stream(data: bytes) -> None:
    # The first byte picks the chunk size (1..256) so the fuzzer explores split points too.
    size = (data[0] + 1) if data else 1
    dec = StreamDecoder(strict_time=bool(len(data) & 1))
    for start in range(1, len(data), size):
        for item in dec.feed(data[start:start + size]):
            if not isinstance(item, Frame | FrameError):
                raise AssertionError(f"stream decoder returned {type(item).__name__}")
        if len(dec._buf) > MAX_FRAME:
            raise AssertionError(f"stream buffer holds {len(dec._buf)} bytes")
    dec.flush()


def test_one_input(data: bytes) -> None:
    """The libFuzzer entry point: one input through every decoder path."""
    _decode(data, True)
    _decode(data, False)
    patched = _patched(data)
    _decode(patched, True)
    _decode(patched, False)
    _stream(data)


def _atheris() -> ModuleType | None:
    try:
        return importlib.import_module("atheris")  # untyped, optional: looked up at run time
    except ImportError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    atheris = _atheris()
    if atheris is None:
        print("fuzz.fuzz_gb26875 needs atheris, which is not installed: "
              "pip install -e '.[fuzz]' (it builds against clang/libFuzzer; wheels exist for "
              "x86_64 Linux). The same properties run under hypothesis in tests/fuzz/.",
              file=sys.stderr)
        return 2
    # The codec is already imported (above): instrument every loaded function for coverage.
    instrument_all: Callable[[], None] = atheris.instrument_all
    instrument_all()
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
