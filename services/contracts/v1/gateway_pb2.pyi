import datetime

from . import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReviewVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_VERDICT_UNSPECIFIED: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_IS: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_IS_NOT: _ClassVar[ReviewVerdict]
    REVIEW_VERDICT_UNKNOWN: _ClassVar[ReviewVerdict]
REVIEW_VERDICT_UNSPECIFIED: ReviewVerdict
REVIEW_VERDICT_IS: ReviewVerdict
REVIEW_VERDICT_IS_NOT: ReviewVerdict
REVIEW_VERDICT_UNKNOWN: ReviewVerdict

class CameraFrame(_message.Message):
    __slots__ = ("door_id", "frame", "captured_at", "sequence", "site", "motion_thumbnail")
    DOOR_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MOTION_THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    door_id: str
    frame: _common_pb2.NDArray
    captured_at: _timestamp_pb2.Timestamp
    sequence: int
    site: str
    motion_thumbnail: _common_pb2.NDArray
    def __init__(self, door_id: _Optional[str] = ..., frame: _Optional[_Union[_common_pb2.NDArray, _Mapping]] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., site: _Optional[str] = ..., motion_thumbnail: _Optional[_Union[_common_pb2.NDArray, _Mapping]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "door_id", "site", "outcome", "identity_id", "display_name", "distance", "face", "frame_sequence", "captured_at", "decided_at", "reason", "model_key", "frames", "track_id")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[Decision.Outcome]
        OUTCOME_GRANTED: _ClassVar[Decision.Outcome]
        OUTCOME_DENIED_UNKNOWN: _ClassVar[Decision.Outcome]
        OUTCOME_DENIED_POLICY: _ClassVar[Decision.Outcome]
        OUTCOME_REVIEW: _ClassVar[Decision.Outcome]
        OUTCOME_ERROR: _ClassVar[Decision.Outcome]
        OUTCOME_DENIED_LIVENESS: _ClassVar[Decision.Outcome]
    OUTCOME_UNSPECIFIED: Decision.Outcome
    OUTCOME_GRANTED: Decision.Outcome
    OUTCOME_DENIED_UNKNOWN: Decision.Outcome
    OUTCOME_DENIED_POLICY: Decision.Outcome
    OUTCOME_REVIEW: Decision.Outcome
    OUTCOME_ERROR: Decision.Outcome
    OUTCOME_DENIED_LIVENESS: Decision.Outcome
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    DOOR_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    door_id: str
    site: str
    outcome: Decision.Outcome
    identity_id: str
    display_name: str
    distance: float
    face: _common_pb2.Face
    frame_sequence: int
    captured_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    reason: str
    model_key: str
    frames: int
    track_id: str
    def __init__(self, decision_id: _Optional[str] = ..., door_id: _Optional[str] = ..., site: _Optional[str] = ..., outcome: _Optional[_Union[Decision.Outcome, str]] = ..., identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., distance: _Optional[float] = ..., face: _Optional[_Union[_common_pb2.Face, _Mapping]] = ..., frame_sequence: _Optional[int] = ..., captured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., model_key: _Optional[str] = ..., frames: _Optional[int] = ..., track_id: _Optional[str] = ...) -> None: ...

class EnrollFromImagesRequest(_message.Message):
    __slots__ = ("identity_id", "display_name", "site", "groups", "metadata", "images", "mode", "allow_duplicate_of", "validate_only", "replace_groups")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    REPLACE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    display_name: str
    site: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.NDArray]
    mode: _common_pb2.EnrollMode
    allow_duplicate_of: _containers.RepeatedScalarFieldContainer[str]
    validate_only: bool
    replace_groups: bool
    def __init__(self, identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., site: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., images: _Optional[_Iterable[_Union[_common_pb2.NDArray, _Mapping]]] = ..., mode: _Optional[_Union[_common_pb2.EnrollMode, str]] = ..., allow_duplicate_of: _Optional[_Iterable[str]] = ..., validate_only: _Optional[bool] = ..., replace_groups: _Optional[bool] = ...) -> None: ...

class PhotoCheck(_message.Message):
    __slots__ = ("accepted", "reason", "guidance", "face", "faces", "brightness", "sharpness", "yaw")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    BRIGHTNESS_FIELD_NUMBER: _ClassVar[int]
    SHARPNESS_FIELD_NUMBER: _ClassVar[int]
    YAW_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    guidance: str
    face: _common_pb2.Face
    faces: int
    brightness: float
    sharpness: float
    yaw: float
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., guidance: _Optional[str] = ..., face: _Optional[_Union[_common_pb2.Face, _Mapping]] = ..., faces: _Optional[int] = ..., brightness: _Optional[float] = ..., sharpness: _Optional[float] = ..., yaw: _Optional[float] = ...) -> None: ...

class EnrollFromImagesResponse(_message.Message):
    __slots__ = ("image_errors", "templates_added", "identity_id", "checks")
    IMAGE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_ADDED_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    image_errors: _containers.RepeatedScalarFieldContainer[str]
    templates_added: int
    identity_id: str
    checks: _containers.RepeatedCompositeFieldContainer[PhotoCheck]
    def __init__(self, image_errors: _Optional[_Iterable[str]] = ..., templates_added: _Optional[int] = ..., identity_id: _Optional[str] = ..., checks: _Optional[_Iterable[_Union[PhotoCheck, _Mapping]]] = ...) -> None: ...

class WatchDecisionsRequest(_message.Message):
    __slots__ = ("door_ids",)
    DOOR_IDS_FIELD_NUMBER: _ClassVar[int]
    door_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, door_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("door_id", "site", "outcome", "since", "until", "limit", "identity_id")
    DOOR_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    door_id: str
    site: str
    outcome: Decision.Outcome
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    limit: int
    identity_id: str
    def __init__(self, door_id: _Optional[str] = ..., site: _Optional[str] = ..., outcome: _Optional[_Union[Decision.Outcome, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., identity_id: _Optional[str] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...

class EraseIdentityRequest(_message.Message):
    __slots__ = ("identity_id", "pseudonymise_decisions", "reason")
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    PSEUDONYMISE_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    pseudonymise_decisions: bool
    reason: str
    def __init__(self, identity_id: _Optional[str] = ..., pseudonymise_decisions: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class EraseIdentityResponse(_message.Message):
    __slots__ = ("templates_removed", "decisions_pseudonymised", "pseudonym", "reviews_deleted")
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_PSEUDONYMISED_FIELD_NUMBER: _ClassVar[int]
    PSEUDONYM_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_DELETED_FIELD_NUMBER: _ClassVar[int]
    templates_removed: int
    decisions_pseudonymised: int
    pseudonym: str
    reviews_deleted: int
    def __init__(self, templates_removed: _Optional[int] = ..., decisions_pseudonymised: _Optional[int] = ..., pseudonym: _Optional[str] = ..., reviews_deleted: _Optional[int] = ...) -> None: ...

class ListAdminActionsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class AdminAction(_message.Message):
    __slots__ = ("action_id", "at", "action", "subject", "detail", "caller")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CALLER_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    at: _timestamp_pb2.Timestamp
    action: str
    subject: str
    detail: str
    caller: str
    def __init__(self, action_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., subject: _Optional[str] = ..., detail: _Optional[str] = ..., caller: _Optional[str] = ...) -> None: ...

class ListAdminActionsResponse(_message.Message):
    __slots__ = ("actions",)
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[AdminAction]
    def __init__(self, actions: _Optional[_Iterable[_Union[AdminAction, _Mapping]]] = ...) -> None: ...

class ListDoorsRequest(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: str
    def __init__(self, site: _Optional[str] = ...) -> None: ...

class DoorStatus(_message.Message):
    __slots__ = ("door_id", "site", "streaming", "frames_per_second", "frames", "frames_dropped", "errors", "last_frame_at", "last_error")
    DOOR_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    door_id: str
    site: str
    streaming: bool
    frames_per_second: float
    frames: int
    frames_dropped: int
    errors: int
    last_frame_at: _timestamp_pb2.Timestamp
    last_error: str
    def __init__(self, door_id: _Optional[str] = ..., site: _Optional[str] = ..., streaming: _Optional[bool] = ..., frames_per_second: _Optional[float] = ..., frames: _Optional[int] = ..., frames_dropped: _Optional[int] = ..., errors: _Optional[int] = ..., last_frame_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ...) -> None: ...

class ListDoorsResponse(_message.Message):
    __slots__ = ("doors",)
    DOORS_FIELD_NUMBER: _ClassVar[int]
    doors: _containers.RepeatedCompositeFieldContainer[DoorStatus]
    def __init__(self, doors: _Optional[_Iterable[_Union[DoorStatus, _Mapping]]] = ...) -> None: ...

class ListReviewsRequest(_message.Message):
    __slots__ = ("site", "include_answered", "limit", "decision_id")
    SITE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ANSWERED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    site: str
    include_answered: bool
    limit: int
    decision_id: str
    def __init__(self, site: _Optional[str] = ..., include_answered: _Optional[bool] = ..., limit: _Optional[int] = ..., decision_id: _Optional[str] = ...) -> None: ...

class ReviewCandidate(_message.Message):
    __slots__ = ("identity_id", "display_name", "distance")
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    display_name: str
    distance: float
    def __init__(self, identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., distance: _Optional[float] = ...) -> None: ...

class ReviewItem(_message.Message):
    __slots__ = ("decision", "face_crop", "candidates", "face_quality", "verdict", "verdict_identity_id", "answered_by", "answered_at", "template_added", "expires_at", "note")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    FACE_CROP_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FACE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ADDED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    face_crop: _common_pb2.NDArray
    candidates: _containers.RepeatedCompositeFieldContainer[ReviewCandidate]
    face_quality: float
    verdict: ReviewVerdict
    verdict_identity_id: str
    answered_by: str
    answered_at: _timestamp_pb2.Timestamp
    template_added: bool
    expires_at: _timestamp_pb2.Timestamp
    note: str
    def __init__(self, decision: _Optional[_Union[Decision, _Mapping]] = ..., face_crop: _Optional[_Union[_common_pb2.NDArray, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[ReviewCandidate, _Mapping]]] = ..., face_quality: _Optional[float] = ..., verdict: _Optional[_Union[ReviewVerdict, str]] = ..., verdict_identity_id: _Optional[str] = ..., answered_by: _Optional[str] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., template_added: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class ListReviewsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReviewItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ReviewItem, _Mapping]]] = ...) -> None: ...

class AnswerReviewRequest(_message.Message):
    __slots__ = ("decision_id", "verdict", "identity_id", "note")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    verdict: ReviewVerdict
    identity_id: str
    note: str
    def __init__(self, decision_id: _Optional[str] = ..., verdict: _Optional[_Union[ReviewVerdict, str]] = ..., identity_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class AnswerReviewResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: ReviewItem
    def __init__(self, item: _Optional[_Union[ReviewItem, _Mapping]] = ...) -> None: ...

class AddReviewTemplateRequest(_message.Message):
    __slots__ = ("decision_id",)
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    def __init__(self, decision_id: _Optional[str] = ...) -> None: ...

class AddReviewTemplateResponse(_message.Message):
    __slots__ = ("templates_added", "identity_id")
    TEMPLATES_ADDED_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    templates_added: int
    identity_id: str
    def __init__(self, templates_added: _Optional[int] = ..., identity_id: _Optional[str] = ...) -> None: ...

class ClusterReviewsRequest(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: str
    def __init__(self, site: _Optional[str] = ...) -> None: ...

class ClusterReviewsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[ReviewGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[ReviewGroup, _Mapping]]] = ...) -> None: ...

class ReviewGroup(_message.Message):
    __slots__ = ("decision_ids",)
    DECISION_IDS_FIELD_NUMBER: _ClassVar[int]
    decision_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, decision_ids: _Optional[_Iterable[str]] = ...) -> None: ...
