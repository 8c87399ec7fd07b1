"""The console's case list and sign-in rules on SQLite and PostgreSQL: who sees which cases,
the filters and the search, passwords, lock-out and the contact-view record."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from bot.app import Services
from handlers.cases import actions, lifecycle, listing
from handlers.errors import BadInput, NotAllowed, NotFound
from handlers.registry import console_access
from storage import tables as t
from storage.clock import FixedClock
from storage.unit_of_work import UnitOfWork
from tests.chat import Chat

NUMBER = re.compile(r"ZN-\d{8}-\d{4}")


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at its lightest: the tests are about the rules, not the hash's cost."""
    monkeypatch.setattr(console_access, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def _report(chat: Chat, resident: int, text: str) -> str:
    said = await chat.resident(resident).says(text)
    match = NUMBER.search(said.text)
    assert match, said.text
    return match.group(0)


def _numbers(services: Services, code: str, filters: listing.Filters | None = None) -> set[str]:
    with UnitOfWork(services.engine) as uow:
        person = uow.session.scalars(select(t.Person).where(t.Person.code == code)).one()
        page = listing.search(uow.session, person, filters or listing.Filters(), services.clock.now())
        return {c.number for c in page.cases}


def _holder_code(services: Services, number: str) -> str:
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        holder = uow.session.get(t.Person, case.holder_id)
        assert holder is not None
        return holder.code


async def test_each_person_lists_exactly_the_cases_the_chat_lets_them_open(chat: Chat, services: Services) -> None:
    with UnitOfWork(services.engine) as uow:
        residents = uow.session.scalars(select(t.Resident).where(t.Resident.demo.is_(True))
                                        .order_by(t.Resident.id)).all()
    numbers = {await _report(chat, i, "楼道灯坏了三天了") for i in range(0, len(residents), 7)}
    numbers.add(await _report(chat, 0, "邻居装修噪音太大，投诉"))
    with UnitOfWork(services.engine) as uow:
        s = uow.session
        every = s.scalars(select(t.Case)).all()
        people = s.scalars(select(t.Person).where(t.Person.active.is_(True))).all()
        for person in people:
            listed = {c.number for c in listing.search(s, person, listing.Filters(), services.clock.now(),
                                                         size=100).cases}
            assert listed == {c.number for c in every if lifecycle.may_see(s, c, person=person)}, person.code
    assert _numbers(services, "lin_hui") == numbers  # the director
    assert _numbers(services, "xu_ting") == numbers  # the front desk
    worker = _holder_code(services, min(numbers))
    assert 0 < len(_numbers(services, worker)) < len(numbers)
    # And the chat agrees: /case on a listed number shows it, on another it is not found.
    staff = chat.staff(worker)
    hidden = min(numbers - _numbers(services, worker))
    assert min(numbers) in (await staff.says(f"/case {min(numbers)}")).text
    assert "没有找到" in (await staff.says(f"/case {hidden}")).text or hidden not in (
        await staff.says(f"/case {hidden}")).text


async def test_filters_and_search_narrow_the_list(chat: Chat, services: Services, clock: FixedClock) -> None:
    lamp = await _report(chat, 0, "楼道灯坏了三天了")
    quarrel = await _report(chat, 0, "邻居装修噪音太大，投诉")
    with UnitOfWork(services.engine) as uow:
        resident = uow.session.scalars(select(t.Resident).where(t.Resident.demo.is_(True))
                                       .order_by(t.Resident.id)).first()
        assert resident is not None
        resident.phone = "13912345678"
        uow.commit()
    F = listing.Filters
    director = "lin_hui"
    assert _numbers(services, director, F(q=lamp)) == {lamp}
    assert _numbers(services, director, F(q=lamp.lower())) == {lamp}
    assert _numbers(services, director, F(q="装修")) == {quarrel}
    assert _numbers(services, director, F(q="912345")) == {lamp, quarrel}  # by phone
    assert _numbers(services, director, F(q="100%")) == set()  # a wildcard is a character
    assert _numbers(services, director, F(kind="complaint")) == {quarrel}
    assert _numbers(services, director, F(state="open")) == {lamp, quarrel}
    assert _numbers(services, director, F(state="closed")) == set()
    assert _numbers(services, director, F(period="2026-11")) == {lamp, quarrel}
    assert _numbers(services, director, F(period="2026-10")) == set()
    assert _numbers(services, director, F(overdue=True)) == set()
    clock.advance(dt.timedelta(days=30))
    assert _numbers(services, director, F(overdue=True)) == {lamp, quarrel}
    with pytest.raises(BadInput):
        _numbers(services, director, F(state="nonsense"))


async def test_a_worker_of_another_grid_finds_no_case_by_the_residents_phone(
        chat: Chat, services: Services) -> None:
    number = await _report(chat, 0, "楼道灯坏了三天了")
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        resident = uow.session.get(t.Resident, case.resident_id)
        assert resident is not None
        resident.phone = "13700001111"
        uow.commit()
    holder = _holder_code(services, number)
    with UnitOfWork(services.engine) as uow:
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        other = next(p.code for p in uow.session.scalars(select(t.Person).order_by(t.Person.code))
                     if p.has_role("grid_worker") and not lifecycle.may_see(uow.session, case, person=p))
    assert _numbers(services, holder, listing.Filters(q="13700001111")) == {number}
    assert _numbers(services, other, listing.Filters(q="13700001111")) == set()


async def test_console_actions_are_the_chats_and_tell_the_resident(chat: Chat, services: Services) -> None:
    number = await _report(chat, 0, "楼道灯坏了三天了")
    resident = chat.resident(0)
    await resident.inbox()
    holder = _holder_code(services, number)
    with UnitOfWork(services.engine) as uow:
        person = uow.session.scalars(select(t.Person).where(t.Person.code == holder)).one()
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        with pytest.raises(BadInput):
            actions.act(uow.session, case, person, "reply", services.clock.now(), text="  ")
        actions.act(uow.session, case, person, "reply", services.clock.now(), text="明天上午电工上门")
        uow.commit()
    told = await resident.inbox()
    assert any("明天上午电工上门" in n.text for n in told)


def test_a_password_link_works_once_and_lock_out_follows_five_failures(services: Services) -> None:
    now = services.clock.now()
    with UnitOfWork(services.engine) as uow:
        token = console_access.issue_password_link(uow.session, "zhang_li", now)
        with pytest.raises(BadInput):
            console_access.set_password(uow.session, token, "short", now)
        console_access.set_password(uow.session, token, "a long passphrase", now)
        with pytest.raises(NotFound):
            console_access.set_password(uow.session, token, "another long one", now)
        uow.commit()
    with UnitOfWork(services.engine) as uow:
        stored = uow.session.scalars(select(t.StaffPassword)).one()
        assert "a long passphrase" not in stored.password_hash and stored.password_hash.startswith("$argon2")
        assert console_access.sign_in(uow.session, "zhang_li", "a long passphrase", now).code == "zhang_li"
        for _ in range(console_access.LOCK_AFTER - 1):
            with pytest.raises(NotAllowed) as failed:
                console_access.sign_in(uow.session, "zhang_li", "wrong", now)
            assert not isinstance(failed.value, console_access.LockedOut)
        with pytest.raises(console_access.LockedOut):
            console_access.sign_in(uow.session, "zhang_li", "wrong", now)
        uow.commit()
    # Locked: even the right password is refused, until the lock-out has passed.
    with UnitOfWork(services.engine) as uow:
        with pytest.raises(console_access.LockedOut):
            console_access.sign_in(uow.session, "zhang_li", "a long passphrase", now + dt.timedelta(minutes=14))
        later = now + console_access.LOCK_FOR + dt.timedelta(seconds=1)
        assert console_access.sign_in(uow.session, "zhang_li", "a long passphrase", later).code == "zhang_li"
    with UnitOfWork(services.engine) as uow, pytest.raises(NotAllowed):
        console_access.sign_in(uow.session, "nobody", "a long passphrase", now)


async def test_the_director_lists_who_saw_a_contact(chat: Chat, services: Services) -> None:
    number = await _report(chat, 0, "楼道灯坏了三天了")
    holder = _holder_code(services, number)
    with UnitOfWork(services.engine) as uow:
        person = uow.session.scalars(select(t.Person).where(t.Person.code == holder)).one()
        case = uow.session.scalars(select(t.Case).where(t.Case.number == number)).one()
        console_access.record_contact_view(uow.session, person, case, services.clock.now())
        uow.commit()
    with UnitOfWork(services.engine) as uow:
        director = uow.session.scalars(select(t.Person).where(t.Person.code == "lin_hui")).one()
        views = console_access.contact_views(uow.session, director)
        assert [(v.person_code, v.case_number) for v in views] == [(holder, number)]
        with pytest.raises(NotAllowed):
            console_access.contact_views(uow.session, person)
