"""Per-head figures for a labelled JSON-lines file: accuracy, macro-F1, confusion matrix."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from nlu.errors import TrainingDataError
from nlu.parse import Parse


class _Parses(Protocol):
    def parse(self, text: str) -> Parse: ...


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; each must have `text`."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise TrainingDataError(f"{path}:{n}: not JSON: {exc}") from exc
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise TrainingDataError(f"{path}:{n}: expected an object with a `text` string")
        rows.append(row)
    return rows


def head_figures(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the true labels, and the confusion matrix (rows: truth)."""
    labels = sorted(set(truth) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted):
        confusion[index[t]][index[p]] += 1
    return {
        "n": len(truth),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=sorted(set(truth)),
                                         average="macro", zero_division=0)), 4),
        "labels": labels,
        "confusion": confusion,
    }


def urgent_by_language(truth: Sequence[str], predicted: Sequence[str],
                       langs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Urgent recall and precision per language: a missed emergency in one language must not
    hide behind good figures in another."""
    out = {}
    for lang in sorted(set(langs)):
        t = [x for x, lg in zip(truth, langs) if lg == lang]
        p = [x for x, lg in zip(predicted, langs) if lg == lang]
        out[lang] = {
            "n": len(t),
            "urgent": t.count("urgent"),
            "recall": round(float(recall_score(t, p, pos_label="urgent", zero_division=0)), 4),
            "precision": round(float(precision_score(t, p, pos_label="urgent", zero_division=0)), 4),
        }
    return out


def evaluate(classifier: _Parses, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Figures for each head the rows are labelled for.

    `kind`, `category` and `urgent` are scored on rows that carry them; `intent` on rows whose
    labelled kind is "other". Urgent recall and precision are also given per language
    (`urgent["by_lang"]`): the row's `lang` when it has one, else the language the parse detected.
    """
    pairs: dict[str, tuple[list[str], list[str]]] = {h: ([], []) for h in
                                                     ("kind", "intent", "category", "urgent")}
    urgent_langs: list[str] = []
    rows = list(rows)
    texts = [str(row["text"]) for row in rows]
    many = getattr(classifier, "parse_many", None)
    parses = many(texts) if callable(many) else [classifier.parse(t) for t in texts]
    for row, parsed in zip(rows, parses):
        for head in ("kind", "category"):
            if row.get(head) is not None:
                pairs[head][0].append(str(row[head]))
                pairs[head][1].append(str(getattr(parsed, head)))
        if row.get("kind") == "other" and row.get("intent"):
            pairs["intent"][0].append(str(row["intent"]))
            pairs["intent"][1].append(str(parsed.intent))
        if row.get("urgent") is not None:
            pairs["urgent"][0].append("urgent" if row["urgent"] else "not_urgent")
            pairs["urgent"][1].append("urgent" if parsed.urgent else "not_urgent")
            urgent_langs.append(str(row.get("lang") or parsed.lang))
    out: dict[str, Any] = {}
    for head, (truth, predicted) in pairs.items():
        if truth:
            out[head] = head_figures(truth, predicted)
    if "urgent" in out:
        truth, predicted = pairs["urgent"]
        for name, metric in (("recall", recall_score), ("precision", precision_score)):
            out["urgent"][name] = round(float(metric(truth, predicted, pos_label="urgent",
                                                     zero_division=0)), 4)
        out["urgent"]["by_lang"] = urgent_by_language(truth, predicted, urgent_langs)
    return out


def format_figures(figures: Mapping[str, Any]) -> str:
    """The figures as a plain-text report."""
    lines = []
    for head, fig in figures.items():
        line = f"{head:<9} n={fig['n']:<5} accuracy={fig['accuracy']:.3f} macro-F1={fig['macro_f1']:.3f}"
        if "recall" in fig:
            line += f" recall={fig['recall']:.3f} precision={fig['precision']:.3f}"
        lines.append(line)
        for lang, by_lang in fig.get("by_lang", {}).items():
            lines.append(f"  {lang:<8} n={by_lang['n']:<5} urgent={by_lang['urgent']:<4} "
                         f"recall={by_lang['recall']:.3f} precision={by_lang['precision']:.3f}")
        width = max(len(label) for label in fig["labels"])
        lines.append("  " + " " * width + "  " + " ".join(f"{i:>4}" for i in range(len(fig["labels"]))))
        for i, (label, counts) in enumerate(zip(fig["labels"], fig["confusion"])):
            lines.append(f"  {label:<{width}}  " + " ".join(f"{c:>4}" for c in counts) + f"   ({i})")
        lines.append("")
    return "\n".join(lines)


# The figures a candidate model is gated on, per head: a head whose figure drops by more than the
# margin fails. Urgent recall stands beside accuracy: a model that misses emergencies must not pass
# on the strength of fewer false alarms.
GATED = (("kind", "accuracy"), ("intent", "accuracy"), ("category", "accuracy"),
         ("category", "macro_f1"), ("urgent", "accuracy"), ("urgent", "recall"))


@dataclass(frozen=True)
class Gate:
    lines: list[str]
    worse: list[str]  # "category accuracy", … : what dropped by more than the margin


def gate(running: Mapping[str, Any], candidate: Mapping[str, Any], margin: float) -> Gate:
    """Compare the figures of `evaluate` for the running model and a candidate."""
    lines, worse = [], []
    for head, figure in GATED:
        if head not in running or head not in candidate or figure not in running[head]:
            continue
        before, after = float(running[head][figure]), float(candidate[head][figure])
        verdict = "WORSE" if after < before - margin else "ok"
        name = f"{head} {figure}"
        lines.append(f"{name:<20} n={running[head]['n']:<5} running={before:.3f} "
                     f"candidate={after:.3f} ({after - before:+.3f}) {verdict}")
        if verdict == "WORSE":
            worse.append(name)
    return Gate(lines=lines, worse=worse)
