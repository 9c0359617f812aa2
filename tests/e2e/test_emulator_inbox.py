"""The emulator's live web inbox: its JSON API over loopback, and the page in a real headless
Chromium (Debian's ``chromium``, driven by Playwright): no skip when the browser is missing (#14)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import ihuyi_async as ih
from ihuyi_async import FakeClock, IhuyiClient
from ihuyi_async.testing import Emulator, EmulatorServer

pytestmark = pytest.mark.anyio

ACCOUNT, KEY = "APIID", "APIKEY"
MOBILE = "13800138000"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Playwright's async API runs on asyncio


@pytest.fixture
async def served() -> AsyncIterator[tuple[Emulator, EmulatorServer]]:
    emulator = Emulator({ACCOUNT: KEY}, 100, clock=FakeClock(1767240000.0, auto_advance=True))
    async with EmulatorServer(emulator) as server:
        yield emulator, server


def client(emulator: Emulator, server: EmulatorServer, **kwargs: Any) -> IhuyiClient:
    return IhuyiClient(ACCOUNT, KEY, base_url=server.url, clock=emulator.clock, limiter=None, **kwargs)


async def test_json_api_reads_what_was_sent(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    async with client(emulator, server) as c:
        sent = await c.send(MOBILE, "您的验证码是：4821。请不要把验证码泄露给其他人。")
        with pytest.raises(ih.ApiError):
            await c.send("12345", "hello")
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        messages = (await http.get("/api/messages", params={"mobile": MOBILE})).json()
        assert [(m["smsid"], m["code"], m["segments"]) for m in messages] == [(sent.smsid, "4821", 1)]
        assert (await http.get("/api/messages/last-code", params={"mobile": MOBILE})).json() == {
            "mobile": MOBILE, "code": "4821"}
        missing = await http.get("/api/messages/last-code", params={"mobile": "13900139000"})
        assert missing.status_code == 404 and "error" in missing.json()
        state = (await http.get("/api/state")).json()
        assert state["accounts"] == [{"account": ACCOUNT, "balance": 99}]
        assert [n["sent_today"] for n in state["numbers"]] == [1]
        assert all("password" not in r["fields"] for r in state["requests"])
        assert KEY not in json.dumps(state)
        newest = (await http.get("/api/state", params={"last": "0"})).json()
        assert newest["messages"] == [] and newest["totals"] == {"messages": 1, "requests": 1, "pushes": 0}
        added = (await http.post("/api/faults", json={"kind": "http_error", "status": 503, "method": "Submit"})).json()
        assert [(f["kind"], f["status"], f["method"], f["remaining"]) for f in added] == [("http_error", 503, "submit", None)]
        assert (await http.delete("/api/faults/0")).json() == []
        assert (await http.post("/api/reply", json={"mobile": MOBILE, "content": "TD"})).status_code == 409
        assert (await http.post("/api/faults", json={"kind": "nope"})).status_code == 400
    # The inbox's own calls are not provider calls: nothing unexpected recorded.
    assert len(emulator.requests) == 1 and emulator.unexpected == []


async def test_events_stream_a_change_after_each_send(served: tuple[Emulator, EmulatorServer]) -> None:
    emulator, server = served
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        async with http.stream("GET", "/api/events") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.aiter_lines()
            assert [await anext(lines) for _ in range(3)] == ["retry: 1000", "event: change", "data: 0"]
            emulator.set_balance(None, 7)  # any change, from any thread
            seen = [await anext(lines) for _ in range(3)]
            assert seen == ["", "event: change", "data: 1"]


async def test_inbox_in_headless_chromium(served: tuple[Emulator, EmulatorServer]) -> None:
    """A message sent through the client appears without a reload; approving a template by
    a click changes what the next ``send_template`` gets; a reply is pushed from the page."""
    from playwright.async_api import async_playwright, expect

    emulator, server = served
    replies: list[str] = []

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page()
            await page.goto(server.url + "/")
            await expect(page.locator("#status")).to_have_attribute("data-state", "live")

            async with client(emulator, server) as legacy, client(emulator, server, flavour="json") as modern:
                sent = await legacy.send(MOBILE, "您的验证码是：4821。请不要把验证码泄露给其他人。")
                row = page.locator(f'#messages tr[data-smsid="{sent.smsid}"]')
                await expect(row).to_have_count(1)  # live: no reload
                await expect(row.locator("td.code")).to_have_text("4821")
                await expect(page.locator("#numbers tbody tr td").nth(1)).to_have_text("1 / 5")

                template = await legacy.add_template("您的订单【变量】已发货")
                with pytest.raises(ih.TemplateError) as refused:
                    await modern.send_template("13900139000", template_id=template.template_id, variables=["A1"])
                assert refused.value.code == 4072  # pending: not approved yet
                await page.locator(f'button.approve[data-id="{template.template_id}"]').click()
                await expect(page.locator(f'#templates tr[data-template="{template.template_id}"] .badge')).to_have_text("approved")
                delivered = await modern.send_template("13900139000", template_id=template.template_id, variables=["A1"])
                assert emulator.messages[-1].content == "您的订单A1已发货"
                await expect(page.locator(f'#messages tr[data-smsid="{delivered.smsid}"] td.content')).to_have_text("您的订单A1已发货")

                refusal = page.locator("#requests tr.refused")
                await expect(refusal).to_have_count(1)  # the 4072, highlighted
                await expect(refusal.locator("td.code-cell")).to_have_text("4072")

            # "Reply as this user" pushes an upstream reply to the configured URL.
            emulator.receipt_url = "http://receiver.test/push"
            emulator.auto_receipts = False

            async def push_handler(request: httpx.Request) -> httpx.Response:
                replies.append(request.content.decode())
                return httpx.Response(200, text="success")

            emulator.push_transport = httpx.MockTransport(push_handler)
            await page.fill("#reply-form input[name=mobile]", MOBILE)
            await page.fill("#reply-form input[name=content]", "TD")
            await page.click("#reply-form button")
            await expect(page.locator("#reply-note")).to_have_text("pushed")
            await expect(page.locator("#pushes tbody tr")).to_have_count(1)
        finally:
            await browser.close()
    assert len(replies) == 1 and "content=TD" in replies[0] and f"smsid={sent.smsid}" in replies[0]
    assert emulator.unexpected == []  # the page's own requests (favicon included) are not calls
