"""The built-in strategies. Each is pure and deterministic: the same contest gives the
same resolution on every replica, so a terminal predicts offline what the server decides.
"""

from __future__ import annotations

from typing import Any

from fynlo_sync.canonical import canonical_bytes
from fynlo_sync.plugins import Contest, Resolution, Strategy

__all__ = [
    "BUILTINS",
    "ClientWins",
    "Manual",
    "ServerWins",
    "SmartMerge",
    "last_writer_wins",
]


def last_writer_wins(contest: Contest) -> Resolution:
    """The later write by (hlc, node_id) wins; the HLC is fixed-width hex, so text order is
    numeric order, and node ids compare by their UTF-8 bytes."""
    if contest.incoming_stamp.key() > contest.server_stamp.key():
        return Resolution("incoming")
    return Resolution("server")


class ServerWins:
    """Contested fields keep the server's value; the op's other fields still apply."""

    name = "server_wins"

    def resolve(self, contest: Contest) -> Resolution:
        return Resolution("server")


class ClientWins:
    """The incoming op overwrites contested fields (and a delete beats an edit)."""

    name = "client_wins"

    def resolve(self, contest: Contest) -> Resolution:
        return Resolution("incoming")


class Manual:
    """Park the whole op, with both versions, in the conflict queue for a person."""

    name = "manual"

    def resolve(self, contest: Contest) -> Resolution:
        return Resolution("park")


def _union(server: Any, incoming: Any) -> list[Any]:
    """Server items in order, then new incoming items in order. Items compare as JSON
    values, by their canonical bytes: ``true`` is not ``1`` (Python's ``==`` says it is,
    which would make a terminal in another language merge differently)."""
    out = list(server) if isinstance(server, list) else []
    seen = {canonical_bytes(item) for item in out}
    for item in incoming if isinstance(incoming, list) else []:
        key = canonical_bytes(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


class SmartMerge:
    """Field-level merge by the field's kind.

    Only contested fields reach a strategy (fields nobody else touched merge by themselves,
    and counters always add). Then: ``set`` unions (server items first, in order, then new
    incoming items in order); ``state`` takes the state of higher precedence in the
    collection's state table, falling back to last-writer-wins for unknown states or a tie;
    ``map`` merges key by key, the last writer's value winning for keys both wrote; ``lww``
    and everything else: last writer wins by (hlc, node_id).
    """

    name = "smart_merge"

    def resolve(self, contest: Contest) -> Resolution:
        kind = contest.kind
        if kind == "set":
            return Resolution("value", _union(contest.server_value, contest.incoming_value))
        if kind == "state" and contest.states:
            rank = {state: i for i, state in enumerate(contest.states)}
            server = rank.get(contest.server_value)
            incoming = rank.get(contest.incoming_value)
            if server is not None and incoming is not None and server != incoming:
                return Resolution("incoming" if incoming > server else "server")
        if (
            kind == "map"
            and isinstance(contest.server_value, dict)
            and isinstance(contest.incoming_value, dict)
        ):
            incoming_wins = last_writer_wins(contest).choice == "incoming"
            winner, loser = (
                (contest.incoming_value, contest.server_value)
                if incoming_wins
                else (contest.server_value, contest.incoming_value)
            )
            merged = {**loser, **winner}
            return Resolution("value", {k: merged[k] for k in sorted(merged)})
        return last_writer_wins(contest)


BUILTINS: tuple[Strategy, ...] = (ServerWins(), ClientWins(), SmartMerge(), Manual())
