"""The Playground form's inputs -> messages and ChatRequests, with what is wrong with them."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.types import ChatRequest, Message

DEFAULT_MODEL = "dryrun-small"


MAX_MODELS = 4


@dataclass
class Inputs:
    """What the form held; stored per run so a run can be loaded back into the form."""

    system: str = ""
    turns: list[tuple[str, str]] = field(default_factory=list)  # prior (role, content)
    prompt: str = ""
    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    temperature: float = 0.7
    max_tokens: int = 256
    org: str = ""
    project: str = ""
    task: str = ""
    cache: bool = True

    def messages(self) -> list[Message]:
        msgs = [Message("system", self.system)] if self.system.strip() else []
        msgs += [Message(role, text) for role, text in self.turns]  # type: ignore[arg-type]
        return [*msgs, Message("user", self.prompt)]

    def problems(self) -> list[str]:
        out = []
        if not self.prompt.strip():
            out.append("The prompt is empty: write a user message.")
        out += [
            f"Prior turn {i + 1} ({role}) is empty."
            for i, (role, text) in enumerate(self.turns)
            if not text.strip()
        ]
        if self.max_tokens < 1:
            out.append(f"Max tokens must be at least 1 (got {self.max_tokens}).")
        if not 0.0 <= self.temperature <= 2.0:
            out.append(f"Temperature must be between 0 and 2 (got {self.temperature}).")
        if not self.models:
            out.append("Pick at least one model.")
        elif len(self.models) > MAX_MODELS:
            out.append(f"At most {MAX_MODELS} models at once (got {len(self.models)}).")
        return out

    def request(self, model: str, user: str) -> ChatRequest:
        return ChatRequest(
            messages=self.messages(),
            model=model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            org=self.org.strip() or None,
            project=self.project.strip() or None,
            user=user,
            task=self.task.strip() or None,
            cache=self.cache,
            source="playground",
        )
