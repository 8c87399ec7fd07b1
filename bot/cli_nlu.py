"""`griddesk nlu train|parse|eval|corrections`: train the embedded model, parse stdin, score
labelled data, gate a candidate model, export staff corrections.

    griddesk nlu train [--data DIR] [--categories FILE] [--extra FILE...] [--out DIR]
    griddesk nlu parse [--model DIR]          one text (or JSON object with `text`) per line
    griddesk nlu eval --data FILE [--model DIR] [--json]
    griddesk nlu eval --gate MODEL_DIR [--data FILE...] [--model DIR] [--margin 0.02]
    griddesk nlu corrections [--since DATE] [--community CODE] --out FILE

`parse` and `eval` read with the configured backend (NLU_BACKEND, NLU_MODEL_DIR, RASA_URL,
RASA_TIMEOUT, RASA_TOKEN), as the bot does; with Rasa, a message Rasa cannot answer is read by
the embedded model and stderr says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nlu


def _train(args: argparse.Namespace) -> int:
    import nlu

    try:
        out = nlu.train(args.data, args.out, categories_file=args.categories, extra_files=args.extra)
    except nlu.NLUError as exc:
        print(exc, file=sys.stderr)
        return 2
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    print(f"model written to {out}")
    for head, spec in manifest["heads"].items():
        print(f"  {head}: {manifest['examples'][head]} examples, labels {', '.join(spec['labels'])}")
    return 0


def _load(args: argparse.Namespace) -> nlu.Classifier | None:
    """The configured backend: the embedded model (`--model`, else NLU_MODEL_DIR, else the
    shipped one), or Rasa with that model standing in, as bot/app.py builds it."""
    from pydantic import ValidationError

    import nlu
    from bot.settings import Settings

    try:
        settings = Settings()
        embedded = nlu.load(args.model or settings.nlu_model_dir)
        if settings.nlu_backend == "rasa":
            return nlu.RasaClassifier(settings.rasa_url, settings.rasa_timeout,
                                      token=settings.rasa_token, embedded=embedded)
    except (ValidationError, nlu.NLUError) as exc:
        print(exc, file=sys.stderr)
        return None
    return embedded


PARSE_BATCH = 256


def _text_of(line: str) -> str:
    """A JSON line's `text` field, or the line itself."""
    if line.lstrip().startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            return obj["text"]
    return line


def _emit(classifier: Any, texts: list[str]) -> None:
    many = getattr(classifier, "parse_many", None)
    parses = many(texts) if many is not None else [classifier.parse(text) for text in texts]
    for parse in parses:
        print(json.dumps(parse.to_json(), ensure_ascii=False), flush=False)


def _rasa_parses(classifier: nlu.RasaClassifier, texts: Iterable[str]) -> Iterator[nlu.Parse]:
    """Rasa's reading of each line; the embedded model's when Rasa cannot answer, said on stderr."""
    import nlu

    for number, text in enumerate(texts, 1):
        try:
            yield classifier.parse_with_rasa(text)
        except nlu.NLUUnavailable as exc:
            print(f"line {number}: {exc}; the embedded model answered", file=sys.stderr)
            yield classifier.embedded_parse(text)


def _parse(args: argparse.Namespace) -> int:
    import nlu

    classifier = _load(args)
    if classifier is None:
        return 2
    if isinstance(classifier, nlu.RasaClassifier):
        with classifier:
            texts = (_text_of(line.rstrip("\r\n")) for line in sys.stdin)
            for parse in _rasa_parses(classifier, texts):
                print(json.dumps(parse.to_json(), ensure_ascii=False), flush=False)
        sys.stdout.flush()
        return 0
    # Parse in batches: one sparse matrix and one product per batch is several times faster than
    # one message at a time; the Rasa backend has no batch form and parses line by line.
    batch: list[str] = []
    for line in sys.stdin:
        batch.append(_text_of(line.rstrip("\r\n")))
        if len(batch) >= PARSE_BATCH:
            _emit(classifier, batch)
            batch = []
    _emit(classifier, batch)
    sys.stdout.flush()
    return 0


def _eval(args: argparse.Namespace) -> int:
    import nlu
    from nlu.evaluation import evaluate, format_figures, read_jsonl

    if args.gate:
        return _gate(args)
    if not args.data:
        print("eval needs --data FILE (or --gate MODEL_DIR)", file=sys.stderr)
        return 2
    classifier = _load(args)
    if classifier is None:
        return 2
    try:
        rows = [row for path in args.data for row in read_jsonl(path)]
    except (OSError, nlu.NLUError) as exc:
        print(exc, file=sys.stderr)
        return 2
    figures = evaluate(classifier, rows)
    if isinstance(classifier, nlu.RasaClassifier):
        classifier.close()
        if classifier.fallbacks:
            print(f"{classifier.fallbacks} of {len(rows)} messages were read by the embedded "
                  f"model: {classifier.last_failure}", file=sys.stderr)
    if args.json:
        print(json.dumps(figures, ensure_ascii=False, indent=2))
    else:
        print(format_figures(figures))
    return 0


def _gate(args: argparse.Namespace) -> int:
    """Exit 1 when the candidate model is worse than the running one on any head by more than
    the margin, on the held-out files (by default every nlu/data/heldout*.jsonl)."""
    import nlu
    from bot.settings import Settings
    from nlu.evaluation import evaluate, gate, read_jsonl

    paths = args.data or sorted(str(p) for p in nlu.DATA_DIR.glob("heldout*.jsonl"))
    try:
        rows = [row for path in paths for row in read_jsonl(path)]
        running = nlu.load(args.model or Settings().nlu_model_dir)
        candidate = nlu.load(args.gate)
    except (OSError, nlu.NLUError) as exc:
        print(exc, file=sys.stderr)
        return 2
    result = gate(evaluate(running, rows), evaluate(candidate, rows), args.margin)
    for line in result.lines:
        print(line)
    if result.worse:
        print(f"candidate {args.gate} is worse on {', '.join(result.worse)} by more than "
              f"{args.margin}: keep the running model", file=sys.stderr)
        return 1
    print(f"candidate {args.gate} passes the gate (margin {args.margin})")
    return 0


def _date(text: str) -> dt.datetime:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=dt.UTC)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _corrections(args: argparse.Namespace) -> int:
    """Staff corrections of the database as masked Rasa NLU YAML (handlers/cases/corrections.py)."""
    from pathlib import Path

    from bot.settings import Settings
    from handlers.cases import corrections
    from storage import db
    from storage.unit_of_work import UnitOfWork

    engine = db.migrated_engine(Settings().database_url)
    try:
        with UnitOfWork(engine) as uow:
            text, count = corrections.export(uow.session, since=args.since, community_code=args.community)
    finally:
        engine.dispose()
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"{count} corrected cases written to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `nlu train|parse|eval` to the griddesk command."""
    from nlu import DATA_DIR, MODEL_DIR

    command = subparsers.add_parser("nlu", help="the NLU model (see nlu/README.md)")
    actions = command.add_subparsers(dest="nlu_command", required=True)

    train = actions.add_parser("train", help="train the embedded model from Rasa NLU YAML")
    train.add_argument("--data", default=str(DATA_DIR), help="folder with kinds.yml, "
                       "categories.yml, urgent.yml, entities.yml (default: nlu/data)")
    train.add_argument("--categories", default=None,
                       help="a categories file replacing DATA/categories.yml (a city's taxonomy)")
    train.add_argument("--extra", nargs="+", default=[], metavar="FILE",
                       help="more Rasa YAML examples of any head, e.g. from `nlu corrections`")
    train.add_argument("--out", default=str(MODEL_DIR), help="model folder (default: nlu/model)")
    train.set_defaults(func=_train)

    parse = actions.add_parser("parse", help="parse stdin, one message per line; JSON lines out")
    parse.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parse.set_defaults(func=_parse)

    evaluate = actions.add_parser("eval", help="score a labelled JSON-lines file")
    evaluate.add_argument("--data", action="append", default=[],
                          help="JSON lines with text, kind, category, urgent and optional intent "
                               "and lang (urgent recall is also given per lang); may be repeated")
    evaluate.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument("--gate", default=None, metavar="MODEL_DIR",
                          help="compare this candidate model with the running one (--model, else "
                               "NLU_MODEL_DIR, else the shipped model); exit 1 when it is worse")
    evaluate.add_argument("--margin", type=float, default=0.02,
                          help="how much worse a head may be before the gate fails (default 0.02)")
    evaluate.set_defaults(func=_eval)

    export = actions.add_parser("corrections", help="staff corrections as Rasa NLU YAML, "
                                "personal data masked")
    export.add_argument("--since", type=_date, default=None, help="corrections made on or after DATE")
    export.add_argument("--community", default=None, help="one community's code (default: all)")
    export.add_argument("--out", required=True, help="the YAML file to write")
    export.set_defaults(func=_corrections)
