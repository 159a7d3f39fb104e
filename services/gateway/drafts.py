"""Draft embeddings at the doors: which one-pass results decide as the full embedding would.

The model's card averages each face's embedding with its mirror image's: two network passes, a
third of the stack's CPU at the doors. A draft is the first pass alone (`EmbedRequest.draft`).
Its distances lie within the card's `draft_margin` of the full embedding's (measured on people
the thresholds were not chosen on: bench/draft_margin_lfw.py), so wherever every distance a
door's decision compares lies farther than that from its threshold, the draft's result is the
full embedding's result. Only the others are embedded again in full and searched again: on LFW
about 30% of genuine probes and 1% of impostor probes for the dlib model, with one impostor
pair in 16 million decided differently outside the margin.
"""

from __future__ import annotations

from services.contracts.v1 import matcher_pb2


def settled(result: matcher_pb2.IdentifyResult, margin: float, same_face: float, ambiguity_gap: float,
            top_k: int, flagged: bool = False) -> bool:
    """Whether a draft's search `result` stands: every candidate's distance is more than `margin`
    from the threshold it was held to and from `same_face` (the liveness check's distance,
    `tracking.Track.identified`), the nearest two are not within `2 * margin` of the ambiguity
    gap's edge (each distance may move by `margin`), and, when all `top_k` candidates came back,
    the last is beyond every threshold by more than the margin (one not returned could otherwise
    move within). Never for a `flagged` probe (capture flags): its threshold depends on which
    identity is nearest, which a draft may change."""
    if flagged:
        return False
    distances = [c.distance for c in result.candidates]
    if not distances:
        return True
    lines = (result.threshold, same_face)
    if any(abs(d - line) <= margin for d in distances for line in lines):
        return False
    if (ambiguity_gap > 0 and len(distances) >= 2 and distances[0] <= result.threshold + margin
            and abs(distances[1] - distances[0] - ambiguity_gap) <= 2 * margin):
        return False
    return len(distances) < top_k or distances[-1] > max(lines) + margin
