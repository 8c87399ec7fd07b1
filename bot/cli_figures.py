"""`griddesk figures`: the figures the centre is judged on (响应率, 按时办结率, 解决率, 满意率).

    griddesk figures                                  this month, by grid, every community
    griddesk figures --by worker --period 2026-11     one month, per accountable staff member
    griddesk figures --community ZN --period 2026-11-01..2026-11-15 --json

Definitions: handlers/figures.py and the README.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bot.settings import Settings


def _figures(args: argparse.Namespace) -> int:
    from handlers import directory, figures
    from handlers.errors import BadInput
    from storage import db
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    engine = db.make_engine(Settings().database_url)
    now = SystemClock().now()
    try:
        with UnitOfWork(engine) as uow:
            communities = directory.communities(uow.session, args.community)
            if not communities:
                print(f"no community {args.community!r}" if args.community else "no community loaded",
                      file=sys.stderr)
                return 2
            reports = []
            for community in communities:
                today = directory.calendar_of(community).to_local(now).date()
                try:
                    start, end = figures.period(args.period or "", today)
                except BadInput as exc:
                    print(exc, file=sys.stderr)
                    return 2
                reports.append(figures.figures(uow.session, community, start, end, args.by, now))
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2))
    else:
        print("\n\n".join(figures.render(r, args.lang) for r in reports))
    return 0


def register(subparsers: Any) -> None:
    from handlers.figures import GROUPINGS

    parser = subparsers.add_parser("figures", help="response, on-time, resolution and satisfaction rates")
    parser.add_argument("--community", help="a community code, e.g. ZN (default: every community)")
    parser.add_argument("--by", choices=GROUPINGS, default="grid")
    parser.add_argument("--period", help="2026-11, 2026-11-01..2026-11-15 or 2026 (default: this month)")
    parser.add_argument("--lang", choices=("zh-Hans", "zh-Hant", "en"), default="zh-Hans")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_figures)
