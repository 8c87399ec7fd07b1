"""The `griddesk` command.

    griddesk serve [--host 127.0.0.1] [--port 8000]   the web app, channels and background loops
                   [--uds PATH | --fd N]             … on a unix socket or an inherited one instead
    griddesk demo                                     a scripted scenario through the real pipeline
    griddesk registry load FILE                       load or update a community registry
    griddesk webchat link (--person CODE | --resident ID)   a signed personal web chat link
    griddesk db upgrade                               migrate the database to the newest schema
    griddesk nlu train|parse|eval                     the NLU model (see nlu/README.md)
    griddesk figures [--by grid] [--period 2026-11]   response, on-time, resolution, satisfaction rates

`griddesk --verbose COMMAND` logs at DEBUG, the database migration's steps included. Every
command that uses the database opens it once through `bot.app.open_database`: migrated, and on
the embedded default with the example community, as `serve` starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from bot import logs
from bot.settings import LogSettings, Settings

Command = Callable[[argparse.Namespace], int]
# Feature modules that add their own subcommands with `register(subparsers)`.
EXTENSIONS = ("bot.cli_nlu", "bot.cli_telegram", "bot.cli_wechat", "bot.cli_wecom", "bot.cli_council",
              "bot.cli_worker", "bot.cli_figures")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot import metrics
    from bot.app import build_app, build_services
    from bot.web import access_log

    settings = Settings()
    metrics.use_multiprocess_dir(settings.database_url)  # before any metric: every process counted
    services = build_services(settings)
    services.pipeline.warm_up()  # before the socket opens: no request waits for it
    access_log.install()  # no signed query strings or login tokens in the access log
    # log_config=None: uvicorn's loggers keep ours (bot/logs.py) and the filter above.
    where = {"fd": args.fd} if args.fd is not None else {"uds": args.uds} if args.uds else \
        {"host": args.host, "port": args.port}
    try:
        uvicorn.run(build_app(services), **where, log_config=None, log_level=settings.log_level.lower())
    finally:
        metrics.process_exiting()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo()


def _registry_load(args: argparse.Namespace) -> int:
    from handlers.errors import RegistryError
    from handlers.registry.loader import load_registry
    from storage import db
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    settings = Settings()
    engine = db.migrated_engine(settings.database_url)
    try:
        with UnitOfWork(engine) as uow:
            summary = load_registry(uow.session, args.file, SystemClock().now())
            uow.commit()
    except RegistryError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    print(summary.describe())
    return 0


def _webchat_link(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from bot.app import open_database
    from bot.web.auth import sign
    from handlers.notify import ensure_identity
    from storage import tables as t
    from storage.clock import SystemClock
    from storage.unit_of_work import UnitOfWork

    settings = Settings()
    engine = open_database(settings)
    now = SystemClock().now()
    with UnitOfWork(engine) as uow:
        if args.person:
            person = uow.session.scalars(select(t.Person).where(t.Person.code == args.person)).first()
            if person is None:
                print(f"no staff member {args.person!r}", file=sys.stderr)
                return 2
            address = f"person:{person.code}"
            ensure_identity(uow.session, "web", address, now, person=person)
        else:
            resident = t.by_id(uow.session, t.Resident, args.resident)
            if resident is None:
                print(f"no resident {args.resident!r}", file=sys.stderr)
                return 2
            address = f"resident:{resident.id}"
            ensure_identity(uow.session, "web", address, now, resident=resident)
        uow.commit()
    print(f"{settings.public_url.rstrip('/')}/login/{sign(settings.secret_key, address)}")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from storage import db

    db.upgrade(Settings().database_url)
    print("database is at the newest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="griddesk", description="The community account.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at DEBUG, the database migration's steps included (as LOG_LEVEL=DEBUG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web app, channels and background loops")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    bind = serve.add_mutually_exclusive_group()
    bind.add_argument("--uds", metavar="PATH", help="listen on this unix socket instead (behind a reverse proxy)")
    bind.add_argument("--fd", type=int, help="listen on this inherited socket (systemd socket activation)")
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="play a scripted scenario through the real pipeline")
    demo.set_defaults(func=_demo)

    registry = sub.add_parser("registry", help="the community registry")
    reg_sub = registry.add_subparsers(dest="registry_command", required=True)
    load = reg_sub.add_parser("load", help="load or update a registry YAML file (idempotent)")
    load.add_argument("file")
    load.set_defaults(func=_registry_load)

    webchat = sub.add_parser("webchat", help="the web chat")
    wc_sub = webchat.add_subparsers(dest="webchat_command", required=True)
    link = wc_sub.add_parser("link", help="print a signed personal link")
    who = link.add_mutually_exclusive_group(required=True)
    who.add_argument("--person", help="a staff member's registry id")
    who.add_argument("--resident", type=int, help="a resident's id")
    link.set_defaults(func=_webchat_link)

    dbp = sub.add_parser("db", help="the database")
    db_sub = dbp.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate to the newest schema").set_defaults(func=_db_upgrade)

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_settings = LogSettings()  # LOG_FORMAT, LOG_LEVEL: the same for serve, worker and the rest
    if args.verbose:
        log_settings = log_settings.model_copy(update={"log_level": "DEBUG"})
    logs.configure(log_settings)
    func: Command = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
