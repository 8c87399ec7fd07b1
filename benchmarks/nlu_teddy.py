"""Benchmark the category head on the Teddy Cup 2020 C public messages (benchmark only).

    uv run python benchmarks/nlu_teddy.py [--titles-only | --title-body] [--data PATH] [--json]

The train split becomes a temporary Rasa YAML categories file and goes through the same
training path as `griddesk nlu train --categories FILE`: one model, trained once, as a city
would train on its archive of letters and then read messages of any length. The test split is
parsed message by message with the full parser (all heads and entities), then again in batches
of `griddesk nlu parse`'s size. Prints accuracy, macro-F1, training time, model load time and
parse throughput on one core, for title+body and for titles alone.
The data never enter the repository: see ../shared/data/README.md for its terms.
"""

from __future__ import annotations

import os

# One core: set before numpy loads its thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nlu
from bot.cli_nlu import PARSE_BATCH
from nlu.evaluation import head_figures, read_jsonl

CSV_NAME = "tipdm2020c/tipdm2020c_fj2_messages.csv"


def data_path(arg: str | None) -> Path:
    if arg:
        path = Path(arg)
    elif os.environ.get("GRIDDESK_DATA_DIR"):
        path = Path(os.environ["GRIDDESK_DATA_DIR"])
    else:
        path = ROOT.parent / "shared" / "data"
    return path / CSV_NAME if path.is_dir() else path


def message(row: dict[str, str], titles_only: bool) -> str:
    if titles_only or not row["body"]:
        return row["title"]
    return row["title"] + "。" + row["body"]


def write_categories(rows: list[dict[str, str]], path: Path) -> None:
    """The train split as a Rasa YAML categories file: each row as its title+body and, when it
    has a body, as its title alone too (a subject line is how a short message reads)."""
    by_label: dict[str, list[str]] = {}
    for row in rows:
        texts = [message(row, False)]
        if row["body"]:
            texts.insert(0, message(row, True))
        for text in texts:
            text = " ".join(text.split())
            if text:
                by_label.setdefault(row["label"], []).append(text)
    lines = ['version: "3.1"', "", "nlu:"]
    for label, texts in by_label.items():
        lines += [f"- intent: {label}", "  examples: |"] + [f"    - {t}" for t in texts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def throughput(classifier: nlu.Classifier, texts: list[str],
               min_seconds: float = 2.0) -> tuple[float, float]:
    """Messages per second of wall-clock time and of this process's CPU time, one per call.

    CPU time is the figure for "one core": it does not count time the process waited for a
    core on a busy machine.
    """
    done, wall, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        for text in texts:
            classifier.parse(text)
        done += len(texts)
        elapsed = time.perf_counter() - wall
        if elapsed >= min_seconds:
            return done / elapsed, done / (time.process_time() - cpu)


def train(rows: list[dict[str, str]]) -> tuple[nlu.Classifier, float, float]:
    """The model trained on the train split, and the training and load times in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        categories = Path(tmp) / "categories.yml"
        write_categories([r for r in rows if r["split"] == "train"], categories)
        started = time.perf_counter()
        nlu.train(nlu.DATA_DIR, Path(tmp) / "model", categories_file=categories)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        classifier = nlu.load(Path(tmp) / "model")
        return classifier, train_seconds, time.perf_counter() - started


def run(classifier: nlu.Classifier, rows: list[dict[str, str]], titles_only: bool) -> dict[str, object]:
    test = [r for r in rows if r["split"] == "test"]
    texts = [message(r, titles_only) for r in test]
    predicted = [classifier.parse(t).category for t in texts]
    figures = head_figures([r["label"] for r in test], predicted)
    wall_rate, cpu_rate = throughput(classifier, texts)
    batch_cpu = time.process_time()
    batched = [p.category for start in range(0, len(texts), PARSE_BATCH)
               for p in classifier.parse_many(texts[start:start + PARSE_BATCH])]  # type: ignore[attr-defined]
    batch_cpu = time.process_time() - batch_cpu
    assert batched == predicted
    return {
        "input": "title" if titles_only else "title+body",
        "train_rows": sum(r["split"] == "train" for r in rows), "test_rows": len(test),
        "accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"],
        "messages_per_second": round(wall_rate),
        "messages_per_cpu_second": round(cpu_rate),
        "batch_messages_per_cpu_second": round(len(texts) / batch_cpu),
        "mean_chars": round(sum(map(len, texts)) / len(texts)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--titles-only", action="store_true", help="only the title run")
    which.add_argument("--title-body", action="store_true", help="only the title+body run")
    parser.add_argument("--data", help="the CSV, or the shared data folder "
                        "(default: $GRIDDESK_DATA_DIR or ../shared/data)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    path = data_path(args.data)
    if not path.is_file():
        print(f"{path}: benchmark data not found (set --data or GRIDDESK_DATA_DIR)", file=sys.stderr)
        return 2
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    modes = [True] if args.titles_only else [False] if args.title_body else [False, True]
    classifier, train_seconds, load_seconds = train(rows)
    results = [run(classifier, rows, titles_only) for titles_only in modes]
    model = {"train_seconds": round(train_seconds, 1), "load_seconds": round(load_seconds, 3)}

    started = time.perf_counter()
    shipped = nlu.load()
    load_seconds = time.perf_counter() - started
    heldout = [r["text"] for r in read_jsonl(nlu.DATA_DIR / "heldout.jsonl")]
    wall_rate, cpu_rate = throughput(shipped, heldout)
    chat = {"input": "own held-out chat messages (shipped model)",
            "messages_per_second": round(wall_rate), "messages_per_cpu_second": round(cpu_rate),
            "mean_chars": round(sum(map(len, heldout)) / len(heldout)),
            "load_seconds": round(load_seconds, 3)}
    if args.json:
        print(json.dumps({"teddy": results, "model": model, "chat": chat},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"Teddy 2020C model: training {model['train_seconds']} s, "
          f"load {model['load_seconds']} s")
    for r in results:
        print(f"Teddy 2020C, {r['input']}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f} "
              f"({r['train_rows']} train / {r['test_rows']} test rows)")
        print(f"  parse {r['messages_per_second']} messages/s wall, "
              f"{r['messages_per_cpu_second']} per CPU second (mean {r['mean_chars']} characters); "
              f"in batches of {PARSE_BATCH} {r['batch_messages_per_cpu_second']} per CPU second")
    print(f"Shipped model: load {chat['load_seconds']} s; chat-length parse "
          f"{chat['messages_per_second']} messages/s wall, {chat['messages_per_cpu_second']} per "
          f"CPU second (mean {chat['mean_chars']} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
