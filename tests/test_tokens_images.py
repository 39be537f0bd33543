"""Images in messages count toward the prompt's tokens, as the providers bill them
(core.vision): the budget reservation, the context-window pre-check and the estimate of a
call without usage all see them. Before, only the messages' text was counted."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from typing import Any

import pytest

from core import tokens, vision
from core.call.estimate import reservation
from core.call.state import Call, Candidate
from core.errors import ContextWindowExceeded
from core.pricing import load_catalog
from core.router import Router
from core.types import ChatRequest, Message


def png(w: int, h: int) -> bytes:
    """A valid one-colour PNG of w x h (greyscale, 1 bit), built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\x00" * ((w + 7) // 8) for _ in range(h))
    head = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def data_url(w: int, h: int, fmt: str = "PNG") -> str:
    if fmt == "PNG":
        raw = png(w, h)
    else:  # encoded by Pillow (the console's dependency, through Streamlit)
        pil = pytest.importorskip("PIL.Image")
        buf = io.BytesIO()
        pil.new("RGB", (w, h), (200, 30, 30)).save(buf, format=fmt)
        raw = buf.getvalue()
    mime = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(raw).decode()


def with_images(*urls: str, detail: str | None = None, text: str = "what is this?") -> Message:
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for u in urls:
        spec: dict[str, Any] = {"url": u}
        if detail:
            spec["detail"] = detail
        parts.append({"type": "image_url", "image_url": spec})
    return Message("user", text, extra={"content": parts})


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_the_size_is_read_from_a_data_url(fmt: str) -> None:
    (img,) = vision.images_of([with_images(data_url(1234, 567, fmt), detail="high")])
    assert (img.width, img.height, img.detail) == (1234, 567, "high")


# (model, width, height, detail, tokens): OpenAI's and Anthropic's published examples
CASES = [
    ("gpt-4o", 1024, 1024, "high", 765),  # 768x768: 4 tiles
    ("gpt-4o", 2048, 4096, "high", 1105),  # 768x1536: 6 tiles
    ("gpt-4o", 4096, 8192, "low", 85),
    ("gpt-4.1", 512, 512, "high", 255),
    ("gpt-4o-mini", 1024, 1024, "high", 2833 + 4 * 5667),
    ("o3", 1024, 1024, "high", 75 + 4 * 150),
    ("gpt-5", 1024, 1024, "high", 70 + 4 * 140),
    ("gpt-4.1-mini", 1024, 1024, "high", 1659),  # 1024 patches x 1.62
    ("o4-mini", 4096, 4096, "high", 2642),  # capped at 1536 patches x 1.72
    ("claude-3-5-haiku", 1000, 1000, "auto", 1334),  # 10^6 / 750
    ("claude-3-5-haiku", 200, 200, "auto", 54),
    ("claude-sonnet-4-5", 5000, 5000, "auto", 1600),  # scaled down: at most ~1600
]


@pytest.mark.parametrize(("model", "w", "h", "detail", "want"), CASES)
def test_images_count_as_the_provider_bills_them(
    model: str, w: int, h: int, detail: str, want: int
) -> None:
    assert vision.image_tokens(model, [vision.Image(w, h, detail)]) == (want, True)


@pytest.mark.parametrize(
    ("model", "want"),
    [("gpt-4o", 85 + 8 * 170), ("gpt-4o-mini", 2833 + 8 * 5667), ("claude-3-5-haiku", 1600)],
)
def test_an_image_of_unknown_size_counts_as_the_documented_maximum(model: str, want: int) -> None:
    """An https URL: no size before the provider fetches it. The count is the most the
    provider bills for one image (flagged), so a reservation can never be short."""
    msgs = [with_images("https://example.com/cat.png")]
    text = tokens.count_messages(model, msgs).tokens
    got = tokens.count_request(model, msgs, {})
    assert got.tokens == text + want and got.estimated
    biggest = max(vision.image_tokens(model, [vision.Image(w, h, "high")])[0] for w, h in SIZES)
    assert want >= biggest


SIZES = [
    (w, h)
    for w in (1, 300, 512, 513, 768, 1024, 1568, 2048, 3000, 8000)
    for h in (1, 700, 2048, 9000)
]


def test_a_request_with_images_counts_them_in_the_prompt() -> None:
    msgs = [Message("system", "Be brief."), with_images(data_url(1024, 1024), detail="high")]
    text = tokens.count_messages("gpt-4o", msgs).tokens
    got = tokens.count_request("gpt-4o", msgs, {})
    assert got.tokens == text + 765 and not got.estimated
    # low detail, two images, auto detail: flagged (auto is counted as high)
    two = [with_images(data_url(1024, 1024), data_url(64, 64), detail="low")]
    assert (
        tokens.count_request("gpt-4o", two, {}).tokens
        == tokens.count_messages("gpt-4o", two).tokens + 2 * 85
    )
    auto = tokens.count_request("gpt-4o", [with_images(data_url(1024, 1024))], {})
    assert auto.estimated


def test_the_reservation_holds_the_images() -> None:
    """The budget guard reserves the candidate's estimate: it now covers the images, per
    model (gpt-4o-mini bills an image about 33 times gpt-4o's tokens)."""
    cat = load_catalog()
    req = ChatRequest([with_images("https://example.com/a.png")], model="gpt-4o", max_tokens=10)
    call = Call(req, "gpt-4o")
    est = {}
    for model in ("gpt-4o", "gpt-4o-mini"):
        cand = Candidate(model, "openai", model, cat.lookup(model))
        cand.call = call
        est[model] = reservation(call, cand)
    text = tokens.count_messages("gpt-4o", req.messages).tokens
    assert est["gpt-4o"].tokens == text + 1445 + 10
    assert est["gpt-4o-mini"].tokens == text + 2833 + 8 * 5667 + 10


def test_the_context_window_pre_check_counts_the_images(costline_home: object) -> None:
    """100 https images are at most 144,500 tokens for a gpt-4o-class count: over
    dryrun-small's 128,000-token window. Before, the router counted the text alone, let it
    through and the call was priced (and reserved) as a few tokens."""
    many = with_images(*[f"https://example.com/{i}.png" for i in range(100)])
    with Router(controls=False) as router:
        with pytest.raises(ContextWindowExceeded, match="exceeds its context window of 128000"):
            router.complete(ChatRequest([many], model="dryrun-small"))
        few = with_images(*[f"https://example.com/{i}.png" for i in range(3)])
        done = router.complete(ChatRequest([few], model="dryrun-small"))
        assert done.text


def test_a_plain_text_prompt_counts_as_before() -> None:
    msgs = [Message("system", "Be brief."), Message("user", "hello")]
    assert vision.images_of(msgs) == ()
    assert tokens.count_request("gpt-4o", msgs, {}) == tokens.count_messages("gpt-4o", msgs)


def test_a_stream_without_usage_is_estimated_with_its_images(scripted_server: Any) -> None:
    """The upstream streams no usage block: the logged input tokens are the estimate, which
    now holds the image (gpt-4o, high detail, 1024x1024: 765 tokens) and the https one (its
    maximum, 1445). Before, the text alone was logged and priced."""
    from core.settings import ProviderConfig, Settings
    from core.usage import Reader
    from tests.servers import scripted as s

    config = ProviderConfig("openai", "openai", scripted_server.openai_url, api_key="sk-test-1")
    settings = Settings.from_env().with_provider(config)
    msg = with_images(data_url(1024, 1024), "https://example.com/b.png", detail="high")
    req = ChatRequest([msg], model="gpt-4o")
    scripted_server.enqueue(s.openai_stream(["a red ", "square"], model="gpt-4o", usage=None))
    with Router(settings, controls=False) as router:
        done = [c for c in router.stream(req)][-1].completion
        router.log.flush()
        (ev,) = Reader(settings.home).events().itertuples()
    text = tokens.count_messages("gpt-4o", [msg]).tokens
    assert done is not None and done.usage.estimated
    assert done.usage.input_tokens == ev.input_tokens == text + 765 + 1445
    sent = scripted_server.requests[0].json["messages"][0]["content"]
    assert [p["type"] for p in sent] == ["text", "image_url", "image_url"]  # sent as given


def test_a_token_budget_reserves_the_images(costline_home: object) -> None:
    """A 1,000-token hard budget: a short question about an https image reserves its
    text, max_tokens and the image's maximum (1,445 tokens) and is refused before any call.
    Before, the reservation held about 20 tokens and the call went through."""
    from core.control import SYSTEM, Budget, ControlPlane
    from core.errors import BudgetExceeded

    plane = ControlPlane()
    plane.upsert_budget(Budget(id="tiny", name="Tiny", limit_tokens=1000, action="block"), SYSTEM)
    plane.close()
    with Router() as router:
        with pytest.raises(BudgetExceeded):
            msg = with_images("https://example.com/x.png")
            router.complete(ChatRequest([msg], model="dryrun-small", max_tokens=10))
        done = router.complete(
            ChatRequest([Message("user", "what is this?")], model="dryrun-small", max_tokens=10)
        )
        assert done.text  # the same question without the image fits the budget
