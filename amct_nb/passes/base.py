"""What a pass reports: structured changes (a kind, the nodes involved, a readable text)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Change", "BN_FOLDED", "fusion_info"]

#: ``Change.kind`` of a BatchNormalization folded into the layer ``target``.
BN_FOLDED = "bn_folded"


@dataclass(frozen=True)
class Change:
    """One thing a pass did (or refused to do, with why in ``text``).

    ``kind`` is what programs compare (e.g. :data:`BN_FOLDED`); ``node`` is the node changed or
    removed and ``target`` the node it went into, when that applies.
    """

    kind: str
    text: str
    node: str | None = None
    target: str | None = None

    def __str__(self) -> str:
        return self.text


def fusion_info(changes: list[Change]) -> dict[str, list[str]]:
    """AMCT's fusion info: layer -> the BatchNormalization nodes folded into it, sorted by layer."""
    fused: dict[str, list[str]] = {}
    for c in changes:
        if c.kind == BN_FOLDED:
            fused.setdefault(c.target, []).append(c.node)
    return {k: v for k, v in sorted(fused.items())}
