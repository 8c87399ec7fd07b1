"""Where newcomers stumbled in the web chat, over real HTTP: buttons that still apply after a
reload, the greeting, photos and locations sent from the page, the persona picker's posts and
the status of a finished case."""

from __future__ import annotations

import io
import random
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import select

from bot.web.auth import sign
from storage import tables as t
from storage.unit_of_work import UnitOfWork
from tests.e2e.conftest import Running
from tests.e2e.test_webchat import NUMBER, as_persona, history, reload, wait_for_notice

# The building ZN-B01 (中南小区1栋) is at 26.5686, 106.7175.
NEAR_B01 = {"latitude": 26.56861, "longitude": 106.71752}


def labels(buttons: list[list[dict[str, Any]]]) -> list[str]:
    return [b["label"] for row in buttons for b in row]


def live(buttons: list[list[dict[str, Any]]]) -> dict[str, bool]:
    return {b["label"]: b["live"] for row in buttons for b in row}


def png(size: tuple[int, int] = (64, 48), noise: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 180, 40))
    if noise:  # random pixels do not compress: a big file
        rng = random.Random(7)
        image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256))
                       for _ in range(size[0] * size[1])])
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def unbound_resident(web: Running) -> httpx.Client:
    """A resident who came through a personal link and is not placed in a building yet."""
    with UnitOfWork(web.services.engine) as uow:
        community_id = uow.session.scalars(select(t.Community.id)).first()
        resident = t.Resident(community_id=community_id or 0, created_at=web.services.clock.now())
        uow.session.add(resident)
        uow.commit()
        address = f"resident:{resident.id}"
    client = web.client(follow_redirects=False)
    assert client.get(f"/login/{sign('e2e-secret', address)}").status_code == 303
    return client


def test_an_acknowledged_case_offers_the_next_steps_not_acknowledge_again(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    number = NUMBER.search(resident.post("/api/chat/send", json={"text": "楼道灯坏了三天了"})
                           .json()["replies"][0]["text"]).group(0)  # type: ignore[union-attr]
    worker = as_persona(web, "person:zhang_li")
    card = wait_for_notice(worker, number)
    assert labels(card["buttons"])[:5] == ["签收", "答复", "转办", "办结", "退单"]
    ack = next(b for row in card["buttons"] for b in row if b["label"] == "签收")
    worker.post("/api/chat/send", json={"action": ack["action"], "label": "签收"}).raise_for_status()

    shown = worker.post("/api/chat/send", json={"text": f"/case {number}"}).json()["replies"][0]
    assert "签收" not in labels(shown["buttons"])
    assert {"答复", "转办", "办结", "退单"} <= set(labels(shown["buttons"]))

    # After a reload the old card's 签收 no longer applies; the rest do (办结 above all).
    page = history(reload(web, worker))
    # The card itself: the notice of this case that came with 签收 (others may name the case too).
    old_card = next(m for m in page["messages"] if m["kind"] == "notice" and number in m["text"]
                    and "签收" in labels(m["buttons"]))
    assert live(old_card["buttons"])["签收"] is False
    assert all(live(old_card["buttons"])[label] for label in ("答复", "转办", "办结", "退单"))


def test_a_pressed_choice_disables_only_itself_after_a_reload(web: Running) -> None:
    newcomer = unbound_resident(web)
    page = history(newcomer)
    [greeting] = page["welcome"]
    committee = greeting["buttons"][0][0]
    assert committee["action"].startswith("com:") and committee["live"] is True
    buildings = newcomer.post("/api/chat/send", json={"action": committee["action"],
                                                      "label": committee["label"]}).json()["replies"][0]
    first = buildings["buttons"][0][0]
    bound = newcomer.post("/api/chat/send", json={"action": first["action"], "label": first["label"]})
    assert "已登记" in bound.json()["replies"][0]["text"]

    reply = next(m for m in history(reload(web, newcomer))["messages"] if m["kind"] == "reply" and m["buttons"])
    states = live(reply["buttons"])
    assert states[first["label"]] is False
    assert [label for label, usable in states.items() if usable] == labels(reply["buttons"])[1:]


def test_the_chat_opens_with_a_greeting_that_says_what_each_person_can_do(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    [greeting] = history(resident)["welcome"]
    assert "中南小区1栋" in greeting["text"] and "📷" in greeting["text"] and "/status" in greeting["text"]

    def staff_greeting(code: str) -> str:
        [said] = history(as_persona(web, f"person:{code}"))["welcome"]
        return str(said["text"])

    worker = staff_greeting("zhang_li")
    assert "第一网格网格员" in worker and "网格员：" in worker and "/mine" in worker
    assert "一口受理前台：" in staff_greeting("xu_ting")
    secretary = staff_greeting("guo_xin")
    assert secretary.startswith("郭欣您好（议事会秘书）") and "/council" in secretary
    assert "一口受理前台 的B岗" in secretary
    director = staff_greeting("lin_hui")
    assert "/overdue" in director and "带班领导" in director

    # Once the conversation has more than a page, the greeting stays at its start only.
    for n in range(3):
        resident.post("/api/chat/send", json={"text": f"/grid {n}"})
    newest = history(resident, limit=2)
    assert newest["welcome"] == [] and newest["before"]
    assert history(resident, before=newest["before"])["welcome"]


def test_the_persona_picker_shows_each_persons_own_posts_first(web: Running) -> None:
    staff = {s["who"]: s for s in httpx.get(f"{web.url}/api/demo/personas").json()["staff"]}
    assert staff["person:guo_xin"]["posts"] == ["议事会秘书"]
    assert staff["person:guo_xin"]["covering"] == ["一口受理前台"]
    assert staff["person:lin_hui"]["posts"] == ["服务中心主任", "社区服务中心"]


def test_a_photo_from_the_page_is_kept_and_filed_with_the_matter(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    photo = png((480, 480), noise=True)
    assert len(photo) > 512 * 1024  # over the app-wide body cap, as a phone's photo is
    sent = resident.post("/api/chat/photo", files={"photo": ("light.png", photo, "image/png")},
                         data={"text": "楼道灯坏了三天了", "client_id": "photo-1"})
    assert sent.status_code == 200, sent.text
    number = NUMBER.search(sent.json()["replies"][0]["text"]).group(0)  # type: ignore[union-attr]

    listed = resident.get(f"/api/cases/{number}/attachments").json()
    [kept] = [a for a in listed if a["kind"] == "photo"]
    assert resident.get(kept["url"]).content == photo
    # The staff card counts it; a retry of the same upload files nothing new.
    assert "居民发来：照片 1 张" in wait_for_notice(as_persona(web, "person:zhang_li"), number)["text"]
    again = resident.post("/api/chat/photo", files={"photo": ("light.png", photo, "image/png")},
                          data={"text": "楼道灯坏了三天了", "client_id": "photo-1"})
    assert again.json()["replies"] == sent.json()["replies"]
    said = [m["text"] for m in history(resident)["messages"] if m["kind"] == "said"]
    assert said == ["📷 楼道灯坏了三天了"]


def test_a_photo_is_checked_and_capped(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    for name, body in (("notes.txt", b"not a photo at all"), ("cut.png", png()[:60])):
        refused = resident.post("/api/chat/photo", files={"photo": (name, body, "image/png")})
        assert refused.status_code == 422, name
    too_big = resident.post("/api/chat/photo", files={"photo": ("big.png", b"\x89PNG" + b"\0" * (11 << 20))})
    assert too_big.status_code == 413
    # The larger cap is the photo route's only: a message keeps the app-wide one.
    assert resident.post("/api/chat/send", content=b'{"text":"' + b"x" * 600_000 + b'"}',
                         headers={"content-type": "application/json"}).status_code == 413
    assert history(resident)["messages"] == []


def test_a_location_places_a_newcomer_and_goes_with_a_residents_matter(web: Running) -> None:
    newcomer = unbound_resident(web)
    placed = newcomer.post("/api/chat/location", json=NEAR_B01).json()["replies"][0]["text"]
    assert "已登记" in placed and "中南小区1栋" in placed

    asked = newcomer.post("/api/chat/location", json=NEAR_B01).json()["replies"][0]["text"]
    assert "一句话" in asked
    filed = newcomer.post("/api/chat/send", json={"text": "这里的路灯坏了"}).json()["replies"][0]["text"]
    number = NUMBER.search(filed).group(0)  # type: ignore[union-attr]
    [where] = [a for a in newcomer.get(f"/api/cases/{number}/attachments").json() if a["kind"] == "location"]
    assert (where["latitude"], where["longitude"]) == (NEAR_B01["latitude"], NEAR_B01["longitude"])

    for bad in ({"latitude": 91, "longitude": 0}, {"latitude": 0}, {"latitude": "NaN", "longitude": 0}):
        assert newcomer.post("/api/chat/location", json=bad).status_code == 422, bad


def test_a_finished_case_shows_no_next_deadline(web: Running) -> None:
    resident = as_persona(web, "building:ZN-B01")
    number = NUMBER.search(resident.post("/api/chat/send", json={"text": "楼道灯坏了三天了"})
                           .json()["replies"][0]["text"]).group(0)  # type: ignore[union-attr]
    assert "下一个时限" in resident.post("/api/chat/send", json={"text": f"/status {number}"}).json()["replies"][0]["text"]
    worker = as_persona(web, "person:zhang_li")
    worker.post("/api/chat/send", json={"text": f"/resolve {number} 已更换灯泡"}).raise_for_status()
    resolved = resident.post("/api/chat/send", json={"text": f"/status {number}"}).json()["replies"][0]["text"]
    assert "下一个时限" not in resolved and "办结" in resolved
    rate = next(b for row in wait_for_notice(resident, "已办结")["buttons"] for b in row if b["label"] == "满意")
    resident.post("/api/chat/send", json={"action": rate["action"]}).raise_for_status()
    closed = resident.post("/api/chat/send", json={"text": f"/status {number}"}).json()["replies"][0]["text"]
    assert "下一个时限" not in closed and "结束" in closed
