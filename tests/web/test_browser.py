"""End to end in a real browser: Playwright driving Debian's headless Chromium against `comicid serve`.

Opens a demo collection, merges two identities, splits one, says "not this" for another instance, renames,
undoes, reloads and checks that the edits were kept. Needs the ``chromium`` package (`.ci/setup-browser.sh` installs it); skipped with the
reason when it or Playwright is absent. With ``COMICID_SCREENSHOTS=DIR`` it also saves screenshots of
the main views there (``docs/screenshots`` is made this way, see docs/VIEWER.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("COMICID_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
uvicorn = pytest.importorskip("uvicorn")
if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
    pytest.skip(f"no Chromium at {CHROMIUM}: run .ci/setup-browser.sh (apt-get install -y chromium)",
                allow_module_level=True)

from comicid.store.collection import Collection  # noqa: E402
from comicid.web.app import create_app  # noqa: E402



@pytest.fixture()
def viewer_collection(request: pytest.FixtureRequest, tmp_path: Path) -> Collection:
    """The shared toy collection; a larger one when screenshots for the docs are being made."""
    if os.environ.get("COMICID_SCREENSHOTS"):
        from comicid.web.toy import toy_collection

        return toy_collection(tmp_path / "screens", books=2, characters=8, pages=3, page_size=(600, 820))
    return request.getfixturevalue("toy")


@pytest.fixture()
def server(viewer_collection: Collection) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(viewer_collection), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the viewer did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


def _shoot(page: object, name: str) -> None:
    folder = os.environ.get("COMICID_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))  # type: ignore[attr-defined]


def _open(driver: Any, url: str) -> tuple[Any, Any, list[str]]:
    """Chromium on ``url`` once the viewer is ready, with the page's script errors collected."""
    browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return browser, page, errors


def test_merge_split_rename_undo_reload(server: str) -> None:
    with playwright_api.sync_playwright() as driver:
        browser, page, errors = _open(driver, server + "/")
        page.select_option("#filter-book", "b0")
        page.wait_for_selector("#identity-grid .card")
        cards = page.locator("#identity-grid .card")
        first, second = cards.nth(0).get_attribute("data-id"), cards.nth(1).get_attribute("data-id")
        count = lambda i: int(cards.nth(i).locator(".meta").inner_text().split(" ")[0])  # noqa: E731
        total = count(0) + count(1)
        page.wait_for_timeout(300)
        _shoot(page, "identities")

        # merge the two largest identities of book b0
        cards.nth(0).locator("input.pick").click()
        cards.nth(1).locator("input.pick").click()
        page.click("#act-merge")
        page.wait_for_selector("#identity-title")
        page.wait_for_function("n => document.querySelectorAll('#member-grid .thumb').length === n", arg=total)
        assert f"{total} instances" in page.inner_text("#identity-title")

        # split one instance off
        page.locator("#member-grid .thumb input.pick").first.click()
        page.click("#act-split")
        page.wait_for_function("n => document.querySelectorAll('#member-grid .thumb').length === n", arg=total - 1)

        # "not this" on another instance: it leaves the identity (a cannot-link)
        page.locator("#member-grid .thumb input.pick").first.click()
        page.click("#act-notthis")
        page.wait_for_function("n => document.querySelectorAll('#member-grid .thumb').length === n", arg=total - 2)

        # rename, with HTML that must show as text
        page.fill("#roster-name", "Ann <b>bold</b>")
        page.fill("#roster-aliases", "Annie")
        page.click("#roster-save")
        page.wait_for_function("() => document.querySelector('#identity-title').firstChild.textContent === 'Ann <b>bold</b>'")
        assert page.locator("#identity-title b").count() == 0
        page.wait_for_function("n => document.querySelectorAll('#member-grid .thumb').length === n", arg=total - 2)
        page.wait_for_timeout(300)  # thumbnails finish decoding
        _shoot(page, "identity")

        # undo the rename: the merge and the split stay
        page.click("#undo")
        page.wait_for_function(f"() => document.querySelector('#identity-title').firstChild.textContent === {first!r}")

        # reload: everything decided is still there
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_function("n => document.querySelectorAll('#member-grid .thumb').length === n", arg=total - 2)
        assert page.input_value("#roster-name") == ""
        page.goto(server + "/#/")
        page.wait_for_selector("#identity-grid .card")
        ids = page.locator("#identity-grid .card").evaluate_all("cards => cards.map(c => c.dataset.id)")
        assert first in ids and second not in ids

        # the page view with boxes, an instance's detail and its nearest neighbours
        page.goto(server + "/#/page/b0/p000")
        page.wait_for_selector(".page-wrap .box.face")
        page.wait_for_timeout(300)
        _shoot(page, "page")
        page.locator(".page-wrap .box.face").first.click()
        page.click("#find-similar")
        page.wait_for_selector("#similar .thumb")
        page.wait_for_timeout(300)
        _shoot(page, "instance")
        page.goto(server + "/#/edits")
        page.wait_for_selector("table.log")
        assert page.locator("table.log tr").count() == 1 + 5  # merge, split, not this, name, undo
        browser.close()
        assert not errors, errors


def test_draw_and_delete_boxes(server: str, viewer_collection: Collection) -> None:
    with playwright_api.sync_playwright() as driver:
        browser, page, errors = _open(driver, server + "/#/page/b0/p000")
        page.wait_for_selector(".page-wrap .box.face")
        boxes = page.locator(".page-wrap .box").count()
        parts = len(viewer_collection.instances())

        # draw a body box by dragging on the page
        page.click("#draw-box")
        page.select_option("#draw-kind", "body")
        area = page.locator("#page-image").bounding_box()
        assert area is not None
        page.mouse.move(area["x"] + 5, area["y"] + 5)
        page.mouse.down()
        page.mouse.move(area["x"] + 60, area["y"] + 70, steps=4)
        page.mouse.up()
        page.wait_for_function("n => document.querySelectorAll('.page-wrap .box').length === n", arg=boxes + 1)
        assert len(viewer_collection.instances()) == parts + 1

        # delete a box from the instance detail
        assert page.locator(".page-wrap.drawing").count() == 0  # one box per "draw box"; boxes click again
        page.locator(".page-wrap .box.face").first.click()
        page.locator("#detail .delete-box").first.click()
        page.wait_for_function("n => document.querySelectorAll('.page-wrap .box').length === n", arg=boxes)
        assert len(viewer_collection.instances()) == parts
        page.goto(server + "/#/edits")
        page.wait_for_selector("table.log")
        assert page.locator("table.log tr").count() == 1 + 2  # add_box, delete_box
        browser.close()
        assert not errors, errors
