"""Real browser: Compare mode streams each column. The local SmolLM2 (llama-cpp in the
console's process) and two dryrun models paced at 60 ms a token are sent side by side; a
MutationObserver records every text each answer box shows. Each column must show its answer
growing (several partial texts, each a prefix of the final one) while the run is going, and
the two paced columns must be partial at the same moment (streamed at once, not in turn)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from console.queries.playground import LOCAL_MODEL
from tests.test_browser_smoke import browser_ready, console_server, signed_in, wait_idle

__all__ = ["browser_ready"]

CURSOR = "▌"  # the page's mark on an answer still streaming (importing a page runs it)
MODELS = ["dryrun-small", "dryrun-large", LOCAL_MODEL]  # as picked: dryrun-small is the default
BOXES = [f".st-key-pg_answer_{i}" for i in range(len(MODELS))]

# Every change of any answer box's text: [ms, text of box 0, box 1, box 2, script running].
RECORD = """boxes => {
    window.__seen = [];
    const read = () => boxes.map(b => {
        const el = document.querySelector(b + ' [data-testid="stMarkdownContainer"]');
        return el ? el.innerText : null;
    });
    let last = '';
    new MutationObserver(() => {
        const texts = read();
        const key = JSON.stringify(texts);
        if (key === last) return;
        last = key;
        const app = document.querySelector('[data-testid="stApp"]');
        const running = app && app.getAttribute('data-test-script-state') === 'running';
        window.__seen.push([performance.now(), ...texts, running]);
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def clean(text: str | None) -> str:
    return (text or "").strip().removesuffix(CURSOR).strip()


def letters(text: str, last_word: bool = True) -> str:
    """Only letters and digits, and without the last word unless asked: markdown renders a
    half-streamed line ('12 *', '1' before '1. ' makes it a list item) otherwise."""
    if not last_word:
        text = text.rsplit(None, 1)[0] if len(text.split()) > 1 else ""
    return re.sub(r"\W+", "", text)


def test_compare_mode_streams_every_column_at_once(
    browser_ready: None,
    costline_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COSTLINE_DRYRUN_MS_PER_TOKEN", "60")  # the console's dryrun pace
    with (
        console_server(costline_home, tmp_path / "streamlit.log") as url,
        signed_in(url) as page,
    ):
        page.goto(url + "/playground")
        wait_idle(page)
        prompt = page.get_by_label("User message", exact=True)
        prompt.fill("Count from one to twenty in words.")
        prompt.press("Tab")  # a text area sends its value when it loses focus
        wait_idle(page)
        tokens = page.get_by_label("Max tokens", exact=True)
        tokens.fill("48")
        tokens.press("Enter")
        wait_idle(page)
        picker = page.get_by_role("combobox", name=re.compile(r"^Models"))
        for model in MODELS[1:]:
            picker.click()
            picker.fill(model)
            # choose it once the list shows it (an Enter typed before the list had caught
            # up with the text chose nothing, once, under load)
            page.get_by_role("option", name=model, exact=True).click()
            wait_idle(page)
        page.keyboard.press("Escape")
        page.evaluate(RECORD, BOXES)
        page.get_by_role("button", name="Send").click()
        page.wait_for_function(
            f"document.querySelectorAll('{BOXES[-1]}').length > 0", timeout=60_000
        )
        wait_idle(page, timeout_ms=120_000)
        seen = page.evaluate("window.__seen")
        finals = [clean(page.locator(b).inner_text()) for b in BOXES]
        heads = page.locator('[data-testid="stColumn"] h3').all_inner_texts()
    assert [h.strip() for h in heads if h.strip() in MODELS] == MODELS
    assert all(finals), finals
    assert CURSOR not in "".join(finals)  # finished answers lose the cursor
    for i, (model, final) in enumerate(zip(MODELS, finals, strict=True)):
        partial = {clean(r[1 + i]) for r in seen if r[-1]} - {"", final}
        assert len(partial) >= 2, (model, partial, final)  # grew piece by piece in its column
        wrong = [p for p in partial if not letters(final).startswith(letters(p, False))]
        assert not wrong, (model, wrong, final)  # each a beginning of the final answer
    both = [
        r for r in seen if r[-1] and all(clean(r[1 + i]) not in ("", finals[i]) for i in (0, 1))
    ]
    assert both, "the two dryrun columns were never streaming at the same moment"
