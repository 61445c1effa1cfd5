"""/playground in headless Chromium against the real gateway: the key field, a streamed app
answer with clickable citations and grounding flags, switching apps, side by side."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ADMIN_KEY, ENGINE_DELAY_S, screenshot

pytestmark = pytest.mark.browser

RECORD_ANSWER_TEXTS = """() => {
  window.seen = [];
  new MutationObserver(() => {
    const texts = document.querySelectorAll(".hy-assistant .hy-text");
    window.seen.push(texts[texts.length - 1].textContent);
  }).observe(document.getElementById("panes"), {subtree: true, childList: true, characterData: true});
}"""


def open_playground(page, url: str, query: str = "") -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/playground{query}")
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#model-a option")).not_to_have_count(0)


def ask(page, question: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(question)
    box.press("Enter")  # the keyboard sends


def test_without_a_key_the_page_asks_for_one(page, gateway):
    from playwright.sync_api import expect

    url, _ = gateway
    page.goto(f"{url}/playground")
    expect(page.get_by_role("status")).to_contain_text("missing API key")
    expect(page.get_by_label("API key")).to_be_focused()


def test_keyboard_alone_sets_the_key_asks_and_opens_a_source(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = "Returns are accepted within 45 days [1]."
    page.goto(f"{url}/playground")
    expect(page.get_by_label("API key")).to_be_focused()  # the gateway asked for a key
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#model-a option")).not_to_have_count(0)
    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(page.evaluate("(e => e.id || e.textContent.trim())(document.activeElement)"))
    assert order == [
        "remember-key",
        "Use key",
        "model-a",
        "compare",
        "pane-a-log",  # focusable, so it scrolls by keyboard
        "message",
        "send",
        "clear",  # stop is disabled while nothing streams
    ]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.type("How long do I have to return my machine?")
    page.keyboard.press("Enter")
    answer = page.locator(".hy-assistant").last
    expect(answer.locator(".hy-served")).to_be_visible()
    answer.get_by_role("button", name="source 1").focus()
    page.keyboard.press("Enter")
    expect(answer.locator("details.hy-cited .hy-passage")).to_be_visible()
    expect(answer.locator("details.hy-cited summary")).to_be_focused()


def test_app_answer_streams_then_shows_clickable_citations(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = "You can return it within 45 days [1]. Refunds take 5 business days."
    open_playground(page, url)
    expect(page.get_by_label("Model", exact=True)).to_have_value("brewbird")  # first app
    pane = page.locator(".pane")
    expect(pane).to_have_count(1)
    expect(pane.get_by_role("heading")).to_have_text("Pip from BrewBird")
    expect(pane.get_by_role("log")).to_contain_text("Hi, I'm Pip!")
    page.evaluate(RECORD_ANSWER_TEXTS)

    ask(page, "How long do I have to return my machine?")
    answer = pane.locator(".hy-assistant").last
    expect(answer.locator(".hy-served")).to_have_text("answered by voice@v1")
    expect(answer.locator(".hy-text")).to_have_text(engine.reply)
    partial = {t for t in page.evaluate("window.seen") if t and t != engine.reply}
    assert len(partial) >= 3, f"the answer did not stream: {partial}"
    expect(pane.get_by_role("log")).to_have_attribute("aria-busy", "false")
    expect(page.get_by_label("Message", exact=True)).to_be_focused()

    expect(answer.locator(".hy-flag.hy-ok")).to_contain_text("Grounded")
    cited = answer.locator("details.hy-cited")
    expect(cited).to_have_count(1)
    expect(cited.locator("summary")).to_contain_text("refunds.md")
    passage = cited.locator(".hy-passage")
    expect(passage).to_be_hidden()
    cited.locator("summary").click()
    expect(passage).to_be_visible()
    expect(passage).to_contain_text("returns within 45 days of delivery")
    screenshot(page, "playground-citation")
    cited.locator("summary").click()
    expect(passage).to_be_hidden()
    answer.get_by_role("button", name="source 1").click()  # the [1] in the text
    expect(passage).to_be_visible()
    expect(cited.locator("summary")).to_be_focused()


def test_grounding_flags_and_the_no_context_answer(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = "The BB-100 has a 2-year warranty, says Tom Baxter."
    open_playground(page, url)
    ask(page, "What warranty does the BB-100 have?")
    answer = page.locator(".hy-assistant").last
    expect(answer.locator(".hy-flag.hy-warn")).to_have_text(
        "⚠ Not in the sources: “Tom Baxter” (name)"
    )
    expect(answer.locator("details.hy-matched summary").first).to_contain_text("warranty.md")

    ask(page, "What is the boiling point of liquid nitrogen on Neptune?")
    answer = page.locator(".hy-assistant").last
    expect(answer.locator(".hy-text")).to_have_text("I could not find that in the sources I have.")
    expect(answer.locator(".hy-flag.hy-info")).to_contain_text("fallback answer")
    expect(answer.locator(".hy-served")).to_have_count(0)  # nothing was generated
    screenshot(page, "playground-grounding")


def test_switching_apps_changes_title_colour_and_voice(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = None  # the fake engine answers "<model> says: <question>"
    open_playground(page, url)
    page.get_by_label("Model", exact=True).select_option("brewbird-basic")
    pane = page.locator(".pane")
    expect(pane.get_by_role("heading")).to_have_text("BrewBird Basic")
    expect(pane.locator(".pane-meta")).to_have_text(
        "app brewbird-basic · knowledge base brewbird-kb · base model"
    )
    expect(pane.locator(".hy-msg")).to_have_count(0)  # no greeting configured
    colour = pane.evaluate("e => getComputedStyle(e).borderTopColor")
    assert colour == "rgb(29, 111, 100)"
    ask(page, "How often should I descale the BB-100?")
    answer = pane.locator(".hy-assistant").last
    expect(answer.locator(".hy-text")).to_have_text(
        "base says: How often should I descale the BB-100?"
    )
    expect(answer.locator(".hy-served")).to_have_text("answered by base")

    page.get_by_label("Model", exact=True).select_option("brewbird")
    expect(pane.get_by_role("heading")).to_have_text("Pip from BrewBird")
    expect(pane.locator(".hy-msg")).to_have_count(1)  # a new conversation: the greeting
    assert pane.evaluate("e => getComputedStyle(e).borderTopColor") == "rgb(228, 87, 46)"


def test_side_by_side_sends_one_question_to_two_models(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = None
    open_playground(page, url)
    page.get_by_label("Model", exact=True).select_option("voice")
    expect(page.get_by_label("Compare with")).to_be_hidden()
    page.get_by_label("Side by side").check()
    expect(page.get_by_label("Compare with")).to_have_value("base")  # an adapter vs its base
    left, right = page.locator(".pane").nth(0), page.locator(".pane").nth(1)
    ask(page, "Say hello")
    expect(left.locator(".hy-assistant .hy-text")).to_have_text("voice@v1 says: Say hello")
    expect(right.locator(".hy-assistant .hy-text")).to_have_text("base says: Say hello")

    page.goto(f"{url}/playground?model=voice@v1&compare=voice@v2")  # two versions
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Use key").click()
    expect(page.get_by_label("Side by side")).to_be_checked()
    expect(left.get_by_role("heading")).to_have_text("voice@v1")
    expect(right.get_by_role("heading")).to_have_text("voice@v2")
    ask(page, "Tell me about the BB-200 Pro")
    expect(left.locator(".hy-served")).to_have_text("answered by voice@v1")
    expect(right.locator(".hy-served")).to_have_text("answered by voice@v2")
    expect(right.locator(".hy-text").last).to_have_text(
        "voice@v2 says: Tell me about the BB-200 Pro"
    )
    screenshot(page, "playground-side-by-side")


def test_stop_ends_an_answer_and_the_page_stays_usable(page, gateway):
    from playwright.sync_api import expect

    url, engine = gateway
    engine.reply = "A slow answer."
    open_playground(page, url)
    engine.delay_s = 5
    try:
        ask(page, "How long do I have to return my machine?")
        stop = page.get_by_role("button", name="Stop")
        expect(stop).to_be_enabled()
        expect(page.get_by_role("button", name="Send")).to_be_disabled()
        stop.click()
        expect(page.locator(".hy-assistant .hy-error").last).to_have_text("Stopped.")
    finally:
        engine.delay_s = ENGINE_DELAY_S
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    ask(page, "How long do I have to return my machine?")
    expect(page.locator(".hy-assistant .hy-text").last).to_have_text("A slow answer.")
