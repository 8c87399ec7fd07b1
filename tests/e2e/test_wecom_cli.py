"""`griddesk wecom sync` against the loopback WeCom: it proposes bindings by mobile number and
changes nothing without --apply; a registry reload keeps what --apply recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from bot.cli import main
from storage import db
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.conftest import EXAMPLE
from tests.fakes.serving import serve
from tests.fakes.wecom import FakeWeCom


def people(url: str) -> dict[str, str | None]:
    engine = db.make_engine(url)
    try:
        with UnitOfWork(engine) as uow:
            return {p.code: p.wecom_userid for p in uow.session.scalars(select(t.Person))}
    finally:
        engine.dispose()


def wecom_identities(url: str) -> dict[str, int | None]:
    engine = db.make_engine(url)
    try:
        with UnitOfWork(engine) as uow:
            return {i.address: i.person_id for i in uow.session.scalars(
                select(t.Identity).where(t.Identity.channel == "wecom"))}
    finally:
        engine.dispose()


def test_sync_proposes_by_mobile_and_applies_only_when_asked(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["registry", "load", str(EXAMPLE)]) == 0
    capsys.readouterr()
    fake = FakeWeCom()
    fake.add_member("zhangli", "张丽", mobile="13800851101", department=2)       # bound already
    fake.add_member("LiJun01", "李军", mobile="+86 138 0085 1103", department=3)  # 李军, not bound yet
    fake.add_member("visitor", "访客", mobile="13900000000", department=2)        # nobody in the registry
    fake.add_member("wangfang", "王芳", mobile="13800851102", visible=False)      # outside the app's range
    with serve(fake.api_app) as api:
        for name, value in (("WECOM_CORP_ID", fake.corp_id), ("WECOM_AGENT_ID", str(fake.agent_id)),
                            ("WECOM_SECRET", fake.secret), ("WECOM_API_BASE", f"{api}/cgi-bin/")):
            monkeypatch.setenv(name, value)
        assert main(["wecom", "sync"]) == 0
        out = capsys.readouterr().out
        assert "+ li_jun 李军 → lijun01" in out
        assert "= zhang_li 张丽 = zhangli" in out
        assert "? member visitor" in out
        assert "! wang_fang 王芳: wangfang is not among the app's visible members" in out
        assert people(url)["li_jun"] is None and wecom_identities(url) == {}

        assert main(["wecom", "sync", "--apply"]) == 0
        assert "li_jun: wecom_userid: lijun01" in capsys.readouterr().out
    assert people(url)["li_jun"] == "lijun01"
    identities = wecom_identities(url)
    assert {"lijun01", "zhangli"} <= set(identities)
    # Loading a changed registry keeps the recorded id (the file names none for 李军) and sets
    # the ones it names.
    changed = tmp_path / "registry.yaml"
    changed.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        'phone: "13800851104"}', 'phone: "13800851104", wecom_userid: ChenJing}', 1), encoding="utf-8")
    assert main(["registry", "load", str(changed)]) == 0
    assert "updated" in capsys.readouterr().out
    assert people(url)["li_jun"] == "lijun01" and people(url)["chen_jing"] == "chenjing"


def test_a_wecom_id_given_to_two_people_is_refused_whatever_its_case(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'ops.db'}")
    broken = tmp_path / "registry.yaml"
    broken.write_text(EXAMPLE.read_text(encoding="utf-8").replace(
        'phone: "13800851104"}', 'phone: "13800851104", wecom_userid: ZhangLi}', 1), encoding="utf-8")
    assert main(["registry", "load", str(broken)]) != 0
    assert "duplicate wecom_userid 'zhangli'" in capsys.readouterr().err
