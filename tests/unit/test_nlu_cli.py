"""`griddesk nlu train|parse|eval`, called through argparse as bot/cli.py calls them."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

import nlu
from bot import cli_nlu
from tests.unit.test_nlu_training import write_data


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="griddesk")
    cli_nlu.register(parser.add_subparsers())
    args = parser.parse_args(["nlu", *argv])
    code: int = args.func(args)
    return code


LABELLED = [
    {"text": "楼道灯坏了好几天了，麻烦派人来修", "kind": "service_request", "category": "facilities",
     "urgent": False},
    {"text": "楼上半夜跺脚吵得睡不着，说了也不听", "kind": "complaint", "category": "neighbor",
     "urgent": False},
    {"text": "闻到很浓的煤气味，快来人", "kind": "service_request", "category": "safety",
     "urgent": True},
    {"text": "谢谢你们", "kind": "other", "intent": "thanks", "category": "other", "urgent": False},
]


def test_eval_reports_each_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in LABELLED), encoding="utf-8")
    assert run("eval", "--data", str(data), "--json") == 0
    figures = json.loads(capsys.readouterr().out)
    assert set(figures) == {"kind", "intent", "category", "urgent"}
    assert figures["kind"]["n"] == 4 and figures["intent"]["n"] == 1
    assert figures["category"]["accuracy"] == 1.0
    assert figures["urgent"]["recall"] == 1.0 and figures["urgent"]["precision"] == 1.0
    assert figures["kind"]["labels"] == ["complaint", "other", "service_request"]
    assert figures["kind"]["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]

    assert run("eval", "--data", str(data)) == 0
    text = capsys.readouterr().out
    assert "kind" in text and "macro-F1=1.000" in text and "recall=1.000" in text


def test_eval_of_a_missing_file_fails_with_a_message(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run("eval", "--data", str(tmp_path / "nope.jsonl")) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_parse_reads_text_and_json_lines(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(
        "楼道灯坏了，3栋2单元301\n" + json.dumps({"text": "谢谢", "id": 7}) + "\n\n"))
    assert run("parse") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    first, second, empty = lines
    assert set(first) >= {"kind", "intent", "category", "urgent", "confidence", "entities", "lang"}
    assert (first["kind"], first["category"]) == ("service_request", "facilities")
    assert {(e["type"], e["value"]) for e in first["entities"]} == {
        ("building", "3"), ("unit", "2"), ("room", "301")}
    assert (second["text"], second["intent"]) == ("谢谢", "thanks")
    assert (empty["kind"], empty["intent"]) == ("other", "out_of_scope")


def test_train_writes_a_model_that_parse_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_data(tmp_path / "data")
    assert run("train", "--data", str(data), "--out", str(tmp_path / "m")) == 0
    assert "model written to" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("建议小区加装电梯\n"))
    assert run("parse", "--model", str(tmp_path / "m")) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "proposal"


def test_train_with_missing_data_fails_with_a_message(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run("train", "--data", str(tmp_path), "--out", str(tmp_path / "m")) == 2
    assert "kinds.yml" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
    assert nlu.MODEL_DIR.is_dir()


def test_parse_with_an_unknown_backend_fails_with_a_message(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NLU_BACKEND", "watson")
    monkeypatch.setattr("sys.stdin", io.StringIO("你好\n"))
    assert run("parse") == 2
    out = capsys.readouterr()
    assert out.out == "" and "nlu_backend" in out.err
