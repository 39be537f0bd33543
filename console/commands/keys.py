"""Keys page writes: issue a gateway key (its budget and limits too) and revoke one. Each
passes the signed-in Actor to the control plane, which checks the role and audits it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from console import auth
from console.inputs.keys import parse_key
from core import clock
from core.control import Actor, VirtualKey
from core.keys import IssuedKey, issue_key


def create_key(actor: Actor, v: Mapping[str, Any]) -> IssuedKey:
    return issue_key(auth.plane(), parse_key(v, clock.today()), actor)


def revoke_key(actor: Actor, name: str) -> VirtualKey:
    return auth.plane().revoke_virtual_key(name, actor)
