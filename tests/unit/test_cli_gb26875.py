"""`firewarden gb26875 decode`: a captured frame in, readable text or JSON out."""

from __future__ import annotations

import json

import pytest

from daemon.cli import main
from tests.unit.test_gb26875_codec import HAND_BUILT


def test_decode_json_names_fire_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives the header and each object with named boolean status flags."""
    assert main(["gb26875", "decode", HAND_BUILT.hex(" "), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["header"]["serial"] == 7
    assert out["header"]["time"] == "2024-03-15T21:07:45"
    obj = out["adu"]["objects"][0]
    assert obj["fire"] is True
    assert obj["fault"] is False
    assert obj["description"] == "3号楼2层烟感"


def test_decode_text(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the frame is described in one line per object."""
    assert main(["gb26875", "decode", HAND_BUILT.hex()]) == 0
    out = capsys.readouterr().out
    assert "component_status" in out
    assert "fire" in out


@pytest.mark.parametrize(("frame", "reason"), [
    (HAND_BUILT[:-3] + bytes([HAND_BUILT[-3] ^ 1]) + b"##", "bad_checksum"),
    (HAND_BUILT[:-2] + b"#!", "bad_end"),
    (b"\x41" + HAND_BUILT[1:], "bad_start"),
])
def test_bad_frame_exits_nonzero_with_reason(frame: bytes, reason: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged frame exits 1 and names the reason."""
    assert main(["gb26875", "decode", frame.hex()]) == 1
    assert f"error: {reason}" in capsys.readouterr().err


def test_not_hex_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Text that is not hex is refused without a traceback."""
    assert main(["gb26875", "decode", "zz"]) == 1
    assert "error:" in capsys.readouterr().err
