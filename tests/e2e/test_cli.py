"""The griddesk command as an operator uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.cli import main
from bot.web.auth import verify
from tests.conftest import EXAMPLE


def test_demo_plays_the_scenario_through_the_real_pipeline(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("SECRET_KEY", "demo-test")
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    number = re.search(r"ZN-\d{8}-\d{4}", out)
    assert number, out[:2000]
    for step in ("已受理", "签收", "转交", "有答复", "已办结", "谢谢您的评价"):
        assert step in out, step
    assert "首问负责人" in out
    # The director's figures count the one case: answered, resolved and rated in time.
    assert "服务中心主任 林慧" in out and "合计：1 件｜响应率 100.0%（1/1）" in out


def test_registry_load_twice_then_link(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
    monkeypatch.setenv("SECRET_KEY", "ops-secret")
    assert main(["registry", "load", str(EXAMPLE)]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["registry", "load", str(EXAMPLE)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert main(["webchat", "link", "--person", "zhang_li"]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://127.0.0.1:8000/login/")
    assert verify("ops-secret", link.rsplit("/", 1)[1]) == "person:zhang_li"
    assert main(["webchat", "link", "--person", "nobody"]) == 2


def test_registry_load_reports_errors_with_line(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
    broken = tmp_path / "broken.yaml"
    broken.write_text(EXAMPLE.read_text(encoding="utf-8").replace("code: ZN-B02", "code: ZN-B01", 1),
                      encoding="utf-8")
    assert main(["registry", "load", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:" in err and "duplicate building code" in err
