"""The embeddable widget in headless Chromium: one <script> tag on another site's page (another
origin, so through the gateway's CORS, under a strict CSP), branded from the app, streaming cited
answers."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ADMIN_KEY, SITE_KEY, screenshot

pytestmark = pytest.mark.browser

SITE = "https://shop.example/"
SITE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>BrewBird shop</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src {gateway};
  connect-src {gateway}; style-src 'nonce-site'">
<style nonce="site">body {{ font-family: Georgia, serif; background: #fdf6ec; color: #40302a; margin: 3rem; }}
button {{ all: unset; }} p {{ font-size: 30px; }}</style></head>
<body><h1>BrewBird home coffee machines</h1>
<p>The BB-100 and the BB-200 Pro. Questions? Ask Pip, bottom right.</p>
<script src="{gateway}/widget.js" data-app="{app}" data-key="{key}" async></script>
</body></html>"""


def open_site(page, gateway_url: str, app: str = "brewbird", key: str = SITE_KEY) -> None:
    """Serve the site's page at SITE (intercepted: no network, but a real public origin)."""
    html = SITE_PAGE.format(gateway=gateway_url, app=app, key=key)
    page.route(SITE, lambda route: route.fulfill(body=html, content_type="text/html"))
    page.goto(SITE)


def test_widget_on_another_site_streams_cited_answers(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = "Descale the BB-100 every 8 weeks [1]."
    open_site(page, url)
    bubble = page.get_by_role("button", name="Chat with Pip from BrewBird")
    expect(bubble).to_have_attribute("aria-expanded", "false")
    assert bubble.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(228, 87, 46)"
    bubble.click()
    dialog = page.get_by_role("dialog", name="Pip from BrewBird")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("log")).to_contain_text("Hi, I'm Pip!")
    box = dialog.get_by_label("Message to Pip from BrewBird")
    expect(box).to_be_focused()

    box.fill("How often should I descale the BB-100?")
    box.press("Enter")
    answer = dialog.locator(".hy-assistant").last
    expect(answer.locator(".hy-served")).to_have_text("answered by voice@v1")
    expect(answer.locator(".hy-text")).to_have_text(engine.reply)
    expect(answer.locator(".hy-flag.hy-ok")).to_be_visible()
    cited = answer.locator("details.hy-cited")
    cited.locator("summary").click()
    expect(cited.locator(".hy-passage")).to_contain_text("every 8 weeks")
    expect(cited.locator(".hy-where")).to_contain_text("descaling.md")
    screenshot(page, "widget-answer")

    box.press("Escape")
    expect(dialog).to_be_hidden()
    expect(bubble).to_be_focused()
    assert not [t for kind, t in page.console if kind in ("warning", "error")], page.console


def test_widget_warns_about_a_key_that_is_not_scoped_to_the_app(page, gateway):
    url, _ = gateway
    with page.expect_console_message(lambda m: "may also use" in m.text) as message:
        open_site(page, url, key=ADMIN_KEY)
    assert "hybrid keys new --name site --model brewbird" in message.value.text
    assert message.value.type == "warning"


def test_widget_for_an_app_the_key_may_not_use_stays_hidden(page, gateway):
    url, _ = gateway
    with page.expect_console_message(lambda m: "Hybrid widget" in m.text) as message:
        open_site(page, url, app="brewbird-basic")
    assert "cannot load app 'brewbird-basic'" in message.value.text
    assert message.value.type == "error"
    assert page.locator(".hybrid-widget").count() == 0
