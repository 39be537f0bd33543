"""Playground runs: sending prompts through the console's Router as the signed-in Actor
(checked against the users table before anything is sent), and keeping each run's inputs."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from console import auth
from console.inputs.playground import Inputs
from console.queries.playground import RUNS_LOCK, runs_file
from core.control import Actor
from core.errors import CostlineError
from core.router import Router
from core.types import ChatRequest, Completion, StreamChunk
from core.validate import unexpected

# One model's piece of a side-by-side run: (index of its request, answer text so far appended
# by this piece, or its outcome: the Completion or the error that ended it).
Piece = tuple[int, str | Completion | CostlineError]


@dataclass(frozen=True)
class RunResult:
    """One model's outcome, as the page shows it (money in picodollars)."""

    requested: str
    request_id: str
    model: str = ""
    provider: str = ""
    text: str = ""
    error: str = ""
    cost: int = 0
    unpriced: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_estimated: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cache_hit: bool = False
    route_reason: str = ""


def result_of(req: ChatRequest, outcome: Completion | Exception) -> RunResult:
    if not isinstance(outcome, Completion):
        return RunResult(str(req.model), req.request_id, error=str(outcome))
    u = outcome.usage
    return RunResult(
        str(req.model),
        outcome.request_id,
        outcome.model,
        outcome.provider,
        outcome.text,
        cost=outcome.cost.total,
        unpriced=outcome.cost.unpriced,
        input_tokens=u.prompt_tokens,
        output_tokens=u.completion_tokens,
        tokens_estimated=u.estimated,
        latency_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        cache_hit=outcome.cache_hit,
        route_reason=outcome.route_reason,
    )


def run_many(
    r: Router, reqs: Sequence[ChatRequest], actor: Actor
) -> list[Completion | CostlineError]:
    """Send the requests side by side, as ``actor`` (an engineer or admin, checked here
    against the users table: hiding the page is not the check)."""
    auth.plane().authorize(actor, "playground")
    return r.batch(reqs, concurrency=len(reqs))


def stream_text(
    r: Router, req: ChatRequest, sink: dict[str, Completion], actor: Actor
) -> Iterator[str]:
    """The answer's text for st.write_stream; the final Completion lands in sink['done'].
    ``actor`` is checked as in ``run_many`` before anything is sent."""
    auth.plane().authorize(actor, "playground")
    chunk: StreamChunk
    for chunk in r.stream(req):
        if chunk.completion is not None:
            sink["done"] = chunk.completion
        if chunk.text:
            yield chunk.text


def stream_many(r: Router, reqs: Sequence[ChatRequest], actor: Actor) -> Iterator[list[Piece]]:
    """Stream the requests side by side (a thread each): yields what arrived since the last
    yield (at least one piece; the page redraws a column once per batch, so a fast model
    costs few redraws), each request's text chunks in order and then its outcome. ``actor``
    is checked as in ``run_many`` before anything is sent. Closing the iterator (the page's
    run was stopped) stops every stream at its next chunk."""
    auth.plane().authorize(actor, "playground")
    pieces: queue.Queue[Piece | int] = queue.Queue()  # an int: that request's thread ended
    stop = threading.Event()

    def one(i: int, req: ChatRequest) -> None:
        try:
            with contextlib.closing(r.stream(req)) as chunks:
                for chunk in chunks:
                    if stop.is_set():
                        return
                    if chunk.text:
                        pieces.put((i, chunk.text))
                    if chunk.completion is not None:
                        pieces.put((i, chunk.completion))
        except CostlineError as exc:
            pieces.put((i, exc))
        except Exception as exc:  # one broken stream must not hang the others' columns
            pieces.put((i, unexpected(exc)))
        finally:
            pieces.put(i)

    threads = [
        threading.Thread(target=one, args=(i, req), name=f"playground-{i}", daemon=True)
        for i, req in enumerate(reqs)
    ]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        while running:
            batch: list[Piece] = []
            item = pieces.get()
            while True:
                if isinstance(item, int):
                    running -= 1
                else:
                    batch.append(item)
                try:
                    item = pieces.get_nowait()
                except queue.Empty:
                    break
            if batch:
                yield batch
    finally:
        stop.set()


def remember(user: str, request_ids: Sequence[str], inputs: Inputs) -> None:
    """Keep a run's inputs (prompts stay in the console's home, not in the shared usage log)."""
    path = runs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(
        json.dumps({"request_id": rid, "user": user, "inputs": asdict(inputs)}) + "\n"
        for rid in request_ids
    )
    with RUNS_LOCK, path.open("a", encoding="utf-8") as f:
        f.write(lines)
