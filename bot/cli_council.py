"""`griddesk council`: the residents' council's meetings and their printable papers.

    griddesk council meetings [--community ZN]
    griddesk council export MEETING --format docx --out agenda.docx
    griddesk council export MEETING --format md            (Markdown on stdout)
    griddesk council export MEETING --paper minutes --format docx --out minutes.docx

The paper is the agenda while the meeting is ahead and the minutes once it has started.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bot.settings import Settings


def _meetings(args: argparse.Namespace) -> int:
    from bot.app import open_database
    from handlers.council import proposals
    from handlers.registry import directory
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    engine = open_database(Settings())
    now = SystemClock().now()
    try:
        with UnitOfWork(engine) as uow:
            for community in directory.communities(uow.session, args.community):
                for row in proposals.meetings_of(uow.session, community.id or 0):
                    local = directory.calendar_of(community).to_local(row.starts_at)
                    state = "held" if row.starts_at <= now else "scheduled"
                    items = len(proposals.agenda(uow.session, row))
                    print(
                        f"{row.id}\t{community.code}\t{row.kind}\t{local:%Y-%m-%d %H:%M}\t{row.place}\t"
                        f"{items} items\t{state}"
                    )
    finally:
        engine.dispose()
    return 0


def _export(args: argparse.Namespace) -> int:
    from bot.app import open_database
    from handlers.council import export
    from storage import tables as t
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    engine = open_database(Settings())
    try:
        with UnitOfWork(engine) as uow:
            meeting = t.by_id(uow.session, t.Meeting, args.meeting)
            if meeting is None:
                print(f"no meeting {args.meeting}", file=sys.stderr)
                return 2
            kind = {"agenda": False, "minutes": True}.get(args.paper)
            paper = export.paper(uow.session, meeting, SystemClock().now(), minutes=kind)
            if args.format == "docx":
                out = Path(
                    args.out or export.file_name(uow.session, meeting, paper, "docx")
                )
                export.write_docx(paper, out)
                print(out)
                return 0
            text = export.to_markdown(paper)
    finally:
        engine.dispose()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers: Any) -> None:
    council = subparsers.add_parser("council", help="the residents' council (三会一评)")
    sub = council.add_subparsers(dest="council_command", required=True)
    meetings = sub.add_parser("meetings", help="list the council's meetings")
    meetings.add_argument("--community", help="a community code, e.g. ZN")
    meetings.set_defaults(func=_meetings)
    export = sub.add_parser("export", help="a meeting's agenda or minutes as Markdown or .docx")
    export.add_argument(
        "meeting", type=int, help="the meeting id (see `griddesk council meetings`)"
    )
    export.add_argument("--format", choices=("md", "docx"), default="md")
    export.add_argument("--out", help="the file to write (Markdown goes to stdout without it)")
    export.add_argument(
        "--paper",
        choices=("auto", "agenda", "minutes"),
        default="auto",
        help="auto: the agenda before the meeting starts, the minutes after",
    )
    export.set_defaults(func=_export)
