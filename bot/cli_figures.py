"""`griddesk figures`: the figures the centre is judged on (响应率, 按时办结率, 解决率, 满意率).

    griddesk figures                                  this month, by grid, every community
    griddesk figures --by worker --period 2026-11     one month, per accountable staff member
    griddesk figures --community ZN --period 2026-11-01..2026-11-15 --json
    griddesk figures --by committee --period 2026-11 --csv > figures.csv

Definitions: handlers/figures/tally.py and the README.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from bot.settings import Settings


def _figures(args: argparse.Namespace) -> int:
    from bot.app import open_database
    from handlers import periods
    from handlers.errors import BadInput
    from handlers.figures import tally
    from handlers.registry import directory
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    engine = open_database(Settings())
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
                today = directory.calendar_of(community).local_date(now)
                try:
                    start, end = periods.period(args.period or "", today)
                except BadInput as exc:
                    print(exc, file=sys.stderr)
                    return 2
                reports.append(tally.figures(uow.session, community, start, end, args.by, now))
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2))
    elif args.csv:
        out = csv.writer(sys.stdout)
        for report in reports:
            # One block per community, the community and period on the first line.
            out.writerow([report.community, report.start.isoformat(), report.end.isoformat()])
            out.writerows(tally.table(report, args.lang))
    else:
        print("\n\n".join(tally.render(r, args.lang) for r in reports))
    return 0


def register(subparsers: Any) -> None:
    from handlers.figures.tally import GROUPINGS

    parser = subparsers.add_parser("figures", help="response, on-time, resolution and satisfaction rates")
    parser.add_argument("--community", help="a community code, e.g. ZN (default: every community)")
    parser.add_argument("--by", choices=GROUPINGS, default="grid")
    parser.add_argument("--period", help="2026-11, 2026-11-01..2026-11-15 or 2026 (default: this month)")
    parser.add_argument("--lang", choices=("zh-Hans", "zh-Hant", "en"), default="zh-Hans")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--csv", action="store_true", help="print CSV (a spreadsheet's columns)")
    parser.set_defaults(func=_figures)
