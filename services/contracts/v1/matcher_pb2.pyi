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

class Classifier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLASSIFIER_NEAREST: _ClassVar[Classifier]
    CLASSIFIER_KNN_VOTE: _ClassVar[Classifier]
CLASSIFIER_NEAREST: Classifier
CLASSIFIER_KNN_VOTE: Classifier

class Identity(_message.Message):
    __slots__ = ("identity_id", "display_name", "site", "groups", "metadata", "template_count", "model_key", "created_at")
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
    TEMPLATE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    display_name: str
    site: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    template_count: int
    model_key: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., site: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., template_count: _Optional[int] = ..., model_key: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("identity_id", "display_name", "site", "groups", "metadata", "embeddings", "mode", "allow_duplicate_of", "replace_groups")
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
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    REPLACE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    display_name: str
    site: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    mode: _common_pb2.EnrollMode
    allow_duplicate_of: _containers.RepeatedScalarFieldContainer[str]
    replace_groups: bool
    def __init__(self, identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., site: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., mode: _Optional[_Union[_common_pb2.EnrollMode, str]] = ..., allow_duplicate_of: _Optional[_Iterable[str]] = ..., replace_groups: _Optional[bool] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("identity", "templates_added")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_ADDED_FIELD_NUMBER: _ClassVar[int]
    identity: Identity
    templates_added: int
    def __init__(self, identity: _Optional[_Union[Identity, _Mapping]] = ..., templates_added: _Optional[int] = ...) -> None: ...

class IdentifyRequest(_message.Message):
    __slots__ = ("probes", "top_k", "site", "max_distance", "target_far", "classifier", "k")
    PROBES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FAR_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    probes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    top_k: int
    site: str
    max_distance: float
    target_far: float
    classifier: Classifier
    k: int
    def __init__(self, probes: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., top_k: _Optional[int] = ..., site: _Optional[str] = ..., max_distance: _Optional[float] = ..., target_far: _Optional[float] = ..., classifier: _Optional[_Union[Classifier, str]] = ..., k: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("identity_id", "display_name", "distance", "similarity", "vote")
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    display_name: str
    distance: float
    similarity: float
    vote: float
    def __init__(self, identity_id: _Optional[str] = ..., display_name: _Optional[str] = ..., distance: _Optional[float] = ..., similarity: _Optional[float] = ..., vote: _Optional[float] = ...) -> None: ...

class IdentifyResult(_message.Message):
    __slots__ = ("unknown", "candidates", "threshold", "ambiguous")
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AMBIGUOUS_FIELD_NUMBER: _ClassVar[int]
    unknown: bool
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    threshold: float
    ambiguous: bool
    def __init__(self, unknown: _Optional[bool] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., threshold: _Optional[float] = ..., ambiguous: _Optional[bool] = ...) -> None: ...

class IdentifyResponse(_message.Message):
    __slots__ = ("results", "gallery_identities")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    GALLERY_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[IdentifyResult]
    gallery_identities: int
    def __init__(self, results: _Optional[_Iterable[_Union[IdentifyResult, _Mapping]]] = ..., gallery_identities: _Optional[int] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("identity_id", "probe", "max_distance", "target_far")
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FAR_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    probe: _common_pb2.Embedding
    max_distance: float
    target_far: float
    def __init__(self, identity_id: _Optional[str] = ..., probe: _Optional[_Union[_common_pb2.Embedding, _Mapping]] = ..., max_distance: _Optional[float] = ..., target_far: _Optional[float] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("match", "distance", "threshold")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    match: bool
    distance: float
    threshold: float
    def __init__(self, match: _Optional[bool] = ..., distance: _Optional[float] = ..., threshold: _Optional[float] = ...) -> None: ...

class DeleteIdentityRequest(_message.Message):
    __slots__ = ("identity_id",)
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    def __init__(self, identity_id: _Optional[str] = ...) -> None: ...

class DeleteIdentityResponse(_message.Message):
    __slots__ = ("templates_removed",)
    TEMPLATES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    templates_removed: int
    def __init__(self, templates_removed: _Optional[int] = ...) -> None: ...

class GetIdentityRequest(_message.Message):
    __slots__ = ("identity_id",)
    IDENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    identity_id: str
    def __init__(self, identity_id: _Optional[str] = ...) -> None: ...

class ListIdentitiesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "site")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    site: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class ListIdentitiesResponse(_message.Message):
    __slots__ = ("identities", "next_page_token")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identities: _containers.RepeatedCompositeFieldContainer[Identity]
    next_page_token: str
    def __init__(self, identities: _Optional[_Iterable[_Union[Identity, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ExportIdentitiesRequest(_message.Message):
    __slots__ = ("site",)
    SITE_FIELD_NUMBER: _ClassVar[int]
    site: str
    def __init__(self, site: _Optional[str] = ...) -> None: ...

class IdentityExport(_message.Message):
    __slots__ = ("identity", "templates")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    identity: Identity
    templates: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    def __init__(self, identity: _Optional[_Union[Identity, _Mapping]] = ..., templates: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ...) -> None: ...

class ClusterRequest(_message.Message):
    __slots__ = ("embeddings", "max_distance", "min_cluster_size")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    MIN_CLUSTER_SIZE_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    max_distance: float
    min_cluster_size: int
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ..., max_distance: _Optional[float] = ..., min_cluster_size: _Optional[int] = ...) -> None: ...

class ClusterResponse(_message.Message):
    __slots__ = ("labels", "clusters")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    clusters: int
    def __init__(self, labels: _Optional[_Iterable[int]] = ..., clusters: _Optional[int] = ...) -> None: ...
