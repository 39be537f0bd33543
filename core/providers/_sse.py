"""A small Server-Sent Events decoder: feed it lines, get (event, data) pairs back."""

from __future__ import annotations


class SSEDecoder:
    """Handles ``event:``/``data:`` fields, multi-line data, ``:`` comments and keepalives."""

    __slots__ = ("_data", "_event")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        """One line without its newline; returns an event when a blank line ends one."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # comment / keepalive
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None  # id, retry and unknown fields are ignored

    def flush(self) -> tuple[str, str] | None:
        """The pending event, if any (also called at end of stream)."""
        if not self._data:
            self._event = ""
            return None
        out = (self._event, "\n".join(self._data))
        self._event = ""
        self._data = []
        return out
