"""x-costline-cache: the values README names switch the response cache; another is a 400
naming the header (it used to be ignored: 'nostore' or 'skip' quietly served cached answers)."""

from __future__ import annotations

import pytest

from core.control import VirtualKey
from core.gateway._errors import HTTPError
from core.gateway._request import meta_of

KEY = VirtualKey(name="web", prefix="sk-cl-abcdef", key_hash="0" * 64)


def cache(value: str | None) -> bool:
    headers = {} if value is None else {b"x-costline-cache": value.encode()}
    return meta_of(headers, KEY).cache


def test_documented_values_switch_it_and_another_is_a_400_naming_the_header() -> None:
    assert cache(None) is True
    for off in ("no-store", "No-Cache", "off", "false"):
        assert cache(off) is False, off
    for on in ("default", "on", "TRUE"):
        assert cache(on) is True, on
    for value in ("nostore", "skip", "maybe"):
        with pytest.raises(HTTPError) as caught:
            cache(value)
        assert caught.value.status == 400 and caught.value.param == "x-costline-cache"
        assert repr(value) in caught.value.message
