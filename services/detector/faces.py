"""Value objects the detector produces and the rest of the pipeline consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectedFace:
    """One face in one frame, in that frame's pixel coordinates.

    `landmarks` are the 5 MTCNN points in this order: the eye on the image's left, the eye on
    the image's right, the nose tip, the mouth corner on the image's left, the one on its right.
    """

    box: tuple[float, float, float, float]  # x, y, width, height (clipped to the frame)
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def size(self) -> float:
        """The face's side in pixels (the smaller side of its box)."""
        return min(self.box[2], self.box[3])

    def moved(self, dx: float, dy: float) -> DetectedFace:
        """The same face with its box and landmarks `dx`, `dy` pixels further right and down (a
        face found in part of a frame, put where it is in the whole)."""
        x, y, w, h = self.box
        return DetectedFace(box=(x + dx, y + dy, w, h), score=self.score,
                            landmarks=tuple((px + dx, py + dy) for px, py in self.landmarks))

    def contains(self, x: float, y: float) -> bool:
        bx, by, bw, bh = self.box
        return bx <= x <= bx + bw and by <= y <= by + bh
