"""The director's dashboard in a real browser (Debian's chromium driven by playwright): the
ECharts charts are drawn from the figures, the map shows the open cases. Writes the README's
screenshot, docs/console-figures.png."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import Running
from tests.e2e.test_console_browser import _resident_reports, quick_hashes, web

pytestmark = pytest.mark.slow
__all__ = ["quick_hashes", "web"]  # the browser module's fixtures, one chromium here
SCREENSHOT = ROOT / "docs" / "console-figures.png"


def test_the_charts_are_drawn_with_the_figures(web: Running, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    residents = httpx.get(f"{web.url}/api/demo/personas").json()["residents"]
    for i, text in enumerate(("楼道灯坏了三天了", "小区门口井盖松动了", "垃圾桶满了没人清理", "路灯不亮")):
        _resident_reports(web, residents[i * 3 % len(residents)]["who"], text)
    web.services.clock.advance(dt.timedelta(days=2))  # type: ignore[attr-defined]

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{web.url}/console/login?next=/console/figures")
    page.click("form[action='/console/demo/persona'] button[value=lin_hui]")
    expect(page.get_by_test_id("figures-table")).to_be_visible()
    page.wait_for_function("() => window.echarts && echarts.getInstanceByDom(document.getElementById('chart-map'))")
    series = page.evaluate("""() => {
        const bars = echarts.getInstanceByDom(document.getElementById('chart-bars')).getOption();
        const trend = echarts.getInstanceByDom(document.getElementById('chart-trend')).getOption();
        const map = echarts.getInstanceByDom(document.getElementById('chart-map')).getOption();
        return {bars: bars.series.map(s => [s.name, s.data]), labels: bars.xAxis[0].data,
                trend: trend.series.map(s => s.data.length), map: map.series[0].data.map(d => d.value[2])};
    }""")
    data = page.evaluate("JSON.parse(document.getElementById('figures-data').textContent)")
    assert series["labels"] == data["bars"]["labels"] and len(series["labels"]) >= 2
    assert [name for name, _ in series["bars"]] == ["响应率", "按时办结率", "解决率", "满意率"]
    assert series["bars"][0][1] == [0 for _ in series["labels"]]  # nobody acknowledged in time
    assert series["trend"] == [8, 8, 8, 8]
    assert sum(series["map"]) == 4  # the four open cases, on their buildings
    blank = page.evaluate("""() => {
        const canvas = document.querySelector('#chart-bars canvas');
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        return pixels.every(v => v === 0);
    }""")
    assert not blank
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    context.close()
