from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENROLL_MODE_UNSPECIFIED: _ClassVar[EnrollMode]
    ENROLL_MODE_CREATE: _ClassVar[EnrollMode]
    ENROLL_MODE_ADD_TEMPLATES: _ClassVar[EnrollMode]
    ENROLL_MODE_UPDATE_DETAILS: _ClassVar[EnrollMode]
ENROLL_MODE_UNSPECIFIED: EnrollMode
ENROLL_MODE_CREATE: EnrollMode
ENROLL_MODE_ADD_TEMPLATES: EnrollMode
ENROLL_MODE_UPDATE_DETAILS: EnrollMode

class NDArray(_message.Message):
    __slots__ = ("dtype", "shape", "data", "encoding")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_RAW: _ClassVar[NDArray.Encoding]
        ENCODING_JPEG: _ClassVar[NDArray.Encoding]
        ENCODING_PNG: _ClassVar[NDArray.Encoding]
    ENCODING_RAW: NDArray.Encoding
    ENCODING_JPEG: NDArray.Encoding
    ENCODING_PNG: NDArray.Encoding
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    encoding: NDArray.Encoding
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., encoding: _Optional[_Union[NDArray.Encoding, str]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "score", "landmarks", "quality", "capture_flags")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    box: Box
    score: float
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    quality: float
    capture_flags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, box: _Optional[_Union[Box, _Mapping]] = ..., score: _Optional[float] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., quality: _Optional[float] = ..., capture_flags: _Optional[_Iterable[str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("vector", "model_id", "model_version", "capture_flags", "capture_measured", "draft")
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_MEASURED_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    vector: _containers.RepeatedScalarFieldContainer[float]
    model_id: str
    model_version: str
    capture_flags: _containers.RepeatedScalarFieldContainer[str]
    capture_measured: bool
    draft: bool
    def __init__(self, vector: _Optional[_Iterable[float]] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., capture_flags: _Optional[_Iterable[str]] = ..., capture_measured: _Optional[bool] = ..., draft: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "model_version", "input_size", "embedding_dim", "distance_threshold", "threshold_source", "landmark_template", "far_thresholds", "default_far", "ambiguity_gap", "draft_margin")
    class FarThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    LANDMARK_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    FAR_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FAR_FIELD_NUMBER: _ClassVar[int]
    AMBIGUITY_GAP_FIELD_NUMBER: _ClassVar[int]
    DRAFT_MARGIN_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    input_size: int
    embedding_dim: int
    distance_threshold: float
    threshold_source: str
    landmark_template: _containers.RepeatedCompositeFieldContainer[Point]
    far_thresholds: _containers.ScalarMap[str, float]
    default_far: float
    ambiguity_gap: float
    draft_margin: float
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., input_size: _Optional[int] = ..., embedding_dim: _Optional[int] = ..., distance_threshold: _Optional[float] = ..., threshold_source: _Optional[str] = ..., landmark_template: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., far_thresholds: _Optional[_Mapping[str, float]] = ..., default_far: _Optional[float] = ..., ambiguity_gap: _Optional[float] = ..., draft_margin: _Optional[float] = ...) -> None: ...
