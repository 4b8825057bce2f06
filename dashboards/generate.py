"""Generate firewarden's Grafana dashboards (stdlib only).

    python -m dashboards.generate            # write dashboards/json/*.json
    python -m dashboards.generate --check    # exit 1 if the committed JSON is stale

The command line and the files: the dashboards themselves are ``boards.py`` (built from
``panels.py``), their JSON model ``grafana_json.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dashboards.boards import DASHBOARDS
from dashboards.grafana_json import dashboard_json

OUT = Path(__file__).resolve().parent / "json"


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    out: dict[str, str] = {}
    for make in DASHBOARDS:
        board = make()
        name = board.uid.removeprefix("firewarden-") + ".json"
        out[name] = json.dumps(dashboard_json(board), indent=2, ensure_ascii=False) + "\n"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate",
                                     description="Write firewarden's Grafana dashboard JSON.")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out instead of writing them")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = [name for name, text in rendered.items()
                 if not (args.out / name).exists()
                 or (args.out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{args.out / name} is not the generator's output", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
