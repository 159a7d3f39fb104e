"""Model cards: what an embedding model needs (crop size, where the 5 landmarks go) and promises
(dimension, calibrated thresholds). Every service reads cards; only the embedder runs models.

A model is a directory holding `model_card.json` beside its weights; known models also have a
card shipped here (`model_cards/<id>.json`), so a recalibrated threshold takes effect without
re-preparing the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from services.core.capture import CAPTURE_FLAGS

DEFAULT_MODEL = "dlib-resnet-v1"


class ModelError(RuntimeError):
    """A model could not be found, prepared or loaded."""


@dataclass(frozen=True)
class GalleryBand:
    """Thresholds calibrated for searches over at most `max_identities` enrolled identities
    (1:K): a stranger compared with K people gets K chances, so the larger the gallery, the
    stricter the distance that keeps the same false-accept rate per probe."""

    max_identities: int
    far_thresholds: dict[str, float]


@dataclass(frozen=True)
class Tightening:
    """How much lower a flagged probe's threshold is (the same FAR, measured with degraded photos)."""

    clean_template: float  # against a template captured cleanly (a desk photo)
    flagged_template: float  # against one captured the same way (a site enrolling from its own cameras)


@dataclass(frozen=True)
class ModelCard:
    """What a model needs and promises. Thresholds belong to a model version."""

    model_id: str
    version: str
    input_size: int
    embedding_dim: int
    landmark_template: tuple[tuple[float, float], ...]  # 5 points in crop pixels
    distance_threshold: float  # Euclidean distance between unit embeddings: the default operating point
    threshold_source: str
    flip_average: bool = True
    # (mean, divisor): the network takes float32 pixels (x - mean) / divisor; None: uint8 crops as they are
    input_scaling: tuple[float, float] | None = None
    source: dict[str, str] = field(default_factory=dict)
    far_thresholds: dict[str, float] = field(default_factory=dict)  # "0.001" -> threshold meeting that FAR
    default_far: float | None = None  # the FAR `distance_threshold` was calibrated for, if any
    ambiguity_gap: float = 0.0  # 1:K: a match is ambiguous if the 2nd identity is within this distance of it
    duplicate_distance: float = 0.0  # enrolment: a face this close to another identity is a duplicate (0 = no check)
    # how far a draft's distances (one pass, no mirror) may lie from the full embedding's; 0: no drafts
    draft_margin: float = 0.0
    gallery_bands: tuple[GalleryBand, ...] = ()  # 1:K thresholds by gallery size, smallest band first
    # how much lower a probe's threshold is per capture flag (services/core/capture.py): against a
    # template captured cleanly, and against one that carries the flag too (or whose capture is unknown)
    capture_tightening: dict[str, Tightening] = field(default_factory=dict)

    def threshold_for(self, far: float | None, identities: int | None = None, capture: tuple[str, ...] = (),
                      template_capture: tuple[str, ...] | None = None) -> float:
        """The threshold calibrated for a false-accept rate (None/0: the default operating
        point). With `identities` (the gallery size a search covers) and 1:K bands on the card,
        the stricter of that and the band's threshold for the size: the smallest band holding
        the gallery, or beyond the largest band that one (the card says how far it was measured).
        A probe's `capture` flags lower it by `tightening`."""
        return self._threshold_for(far, identities) - self.tightening(capture, template_capture)

    def tightening(self, capture: tuple[str, ...], template_capture: tuple[str, ...] | None = None) -> float:
        """How much lower the threshold is for a probe with these capture flags: its strictest
        flag's tightening, against a template that carries the flag too (or whose capture is not
        known: None) or against a clean one. ValueError for a flag that is not a capture flag."""
        check_flags(capture)
        tightening = 0.0
        for flag in capture:
            if flag in self.capture_tightening:
                rule = self.capture_tightening[flag]
                both = template_capture is None or flag in template_capture
                tightening = max(tightening, rule.flagged_template if both else rule.clean_template)
        return tightening

    def _threshold_for(self, far: float | None, identities: int | None) -> float:
        if far:
            key = f"{far:g}"
            if key not in self.far_thresholds:
                raise ValueError(f"{self.model_key} has no threshold calibrated for FAR {key}; "
                                 f"calibrated: {', '.join(sorted(self.far_thresholds, key=float)) or 'none'}")
            pair = self.far_thresholds[key]
        else:
            key, pair = f"{self.default_far or 0:g}", self.distance_threshold
        if identities is None or not self.gallery_bands or key not in self.far_thresholds:
            return pair
        band = next((b for b in self.gallery_bands if identities <= b.max_identities), self.gallery_bands[-1])
        return min(pair, band.far_thresholds[key])

    @property
    def model_key(self) -> str:
        """The id a gallery stores with every vector: `model_id@version`."""
        return f"{self.model_id}@{self.version}"

    @staticmethod
    def from_json(text: str) -> ModelCard:
        raw = json.loads(text)
        try:
            card = ModelCard(
                model_id=str(raw["model_id"]),
                version=str(raw["version"]),
                input_size=int(raw["input_size"]),
                embedding_dim=int(raw["embedding_dim"]),
                landmark_template=tuple((float(x), float(y)) for x, y in raw["landmark_template"]),
                distance_threshold=float(raw["distance_threshold"]),
                threshold_source=str(raw["threshold_source"]),
                flip_average=bool(raw.get("flip_average", True)),
                input_scaling=_scaling(raw.get("input_scaling")),
                source={str(k): str(v) for k, v in raw.get("source", {}).items()},
                far_thresholds={f"{float(k):g}": float(v) for k, v in raw.get("far_thresholds", {}).items()},
                default_far=float(raw["default_far"]) if raw.get("default_far") is not None else None,
                ambiguity_gap=float(raw.get("ambiguity_gap", 0.0)),
                duplicate_distance=float(raw.get("duplicate_distance", 0.0)),
                draft_margin=float(raw.get("draft_margin", 0.0)),
                gallery_bands=tuple(
                    GalleryBand(int(b["max_identities"]),
                                {f"{float(k):g}": float(v) for k, v in b["far_thresholds"].items()})
                    for b in raw.get("gallery_bands", [])),
                capture_tightening={str(k): Tightening(float(v["clean_template"]), float(v["flagged_template"]))
                                    for k, v in raw.get("capture_tightening", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card is missing or has a bad field: {exc}") from exc
        check_bands(card)
        check_capture(card)
        if card.draft_margin < 0 or (card.draft_margin and not card.flip_average):
            raise ModelError(f"model card draft_margin {card.draft_margin}: >= 0, and 0 unless flip_average (a "
                             "draft is the embedding without its mirror pass)")
        return card

    def to_json(self) -> str:
        return json.dumps(
            {
                "model_id": self.model_id,
                "version": self.version,
                "input_size": self.input_size,
                "embedding_dim": self.embedding_dim,
                "landmark_template": [list(p) for p in self.landmark_template],
                "distance_threshold": self.distance_threshold,
                "threshold_source": self.threshold_source,
                "flip_average": self.flip_average,
                **({"input_scaling": {"mean": self.input_scaling[0], "divisor": self.input_scaling[1]}}
                   if self.input_scaling else {}),
                "source": self.source,
                "far_thresholds": self.far_thresholds,
                "default_far": self.default_far,
                "ambiguity_gap": self.ambiguity_gap,
                "duplicate_distance": self.duplicate_distance,
                "draft_margin": self.draft_margin,
                "gallery_bands": [{"max_identities": b.max_identities, "far_thresholds": b.far_thresholds}
                                  for b in self.gallery_bands],
                "capture_tightening": {flag: asdict(t) for flag, t in self.capture_tightening.items()},
            },
            indent=2,
        )


def _scaling(raw: object) -> tuple[float, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"input_scaling must be {{'mean': m, 'divisor': d}}, got {raw!r}")
    mean, divisor = float(raw["mean"]), float(raw["divisor"])
    if not divisor > 0:
        raise ValueError(f"input_scaling divisor must be > 0, got {divisor}")
    return mean, divisor


def check_capture(card: ModelCard) -> None:
    """Capture tightening names known flags and only tightens, by less than a threshold."""
    # every threshold a tightening may be taken from: the default, each FAR's and each 1:K band's
    strictest = min([card.distance_threshold, *card.far_thresholds.values(),
                     *(t for band in card.gallery_bands for t in band.far_thresholds.values())])
    for flag, rule in card.capture_tightening.items():
        if flag not in CAPTURE_FLAGS:
            raise ModelError(f"{card.model_key}: capture_tightening names {flag!r}; "
                             f"known flags: {', '.join(CAPTURE_FLAGS)}")
        if not 0 <= rule.clean_template <= rule.flagged_template < strictest:
            raise ModelError(f"{card.model_key}: capture_tightening[{flag!r}] = {rule}: need 0 <= clean_template <= "
                             f"flagged_template, below every threshold (the strictest is {strictest:.4f})")


def check_flags(flags: tuple[str, ...] | list[str]) -> None:
    """ValueError naming the flags that are not capture flags."""
    unknown = sorted(set(flags) - set(CAPTURE_FLAGS))
    if unknown:
        raise ValueError(f"unknown capture flags {unknown}; known: {', '.join(CAPTURE_FLAGS)}")


def check_bands(card: ModelCard) -> None:
    """A card's 1:K bands must grow, cover every calibrated FAR (no size may silently fall back
    to the pair threshold) and only tighten as the gallery grows."""
    sizes = [b.max_identities for b in card.gallery_bands]
    if sizes != sorted(set(sizes)) or (sizes and sizes[0] < 1):
        raise ModelError(f"{card.model_key}: gallery_bands must have growing max_identities >= 1, got {sizes}")
    for band in card.gallery_bands:
        if set(band.far_thresholds) != set(card.far_thresholds):
            raise ModelError(f"{card.model_key}: the band up to {band.max_identities} identities calibrates FAR "
                             f"{sorted(band.far_thresholds)}, the card {sorted(card.far_thresholds)}: both must match")
    for smaller, larger in zip(card.gallery_bands, card.gallery_bands[1:], strict=False):
        for far, threshold in larger.far_thresholds.items():
            if threshold > smaller.far_thresholds[far]:
                raise ModelError(f"{card.model_key}: FAR {far}: the threshold for up to {larger.max_identities} "
                                 f"identities ({threshold}) is looser than for {smaller.max_identities}")


def bundled_card(model_id: str) -> ModelCard:
    """The card this repository ships for a known model."""
    cards = resources.files("services.core").joinpath("model_cards")
    if not cards.joinpath(f"{model_id}.json").is_file():
        raise ModelError(f"unknown model {model_id!r}; known: {known_models()} (or pass a model directory)")
    return ModelCard.from_json(cards.joinpath(f"{model_id}.json").read_text())


def known_models() -> list[str]:
    """Models with a card shipped here."""
    cards = resources.files("services.core").joinpath("model_cards")
    return sorted(p.name.removesuffix(".json") for p in cards.iterdir() if p.name.endswith(".json"))


def load_card(name_or_dir: str = DEFAULT_MODEL) -> ModelCard:
    """A model's card without loading its weights (for services that only need its geometry)."""
    if name_or_dir in known_models():
        return bundled_card(name_or_dir)
    card_path = Path(name_or_dir) / "model_card.json"
    if not card_path.is_file():
        raise ModelError(f"{name_or_dir!r} is neither a known model {known_models()} nor a model directory")
    return ModelCard.from_json(card_path.read_text())
