from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DetectRequest(_message.Message):
    __slots__ = ("frames", "min_face_size", "min_score", "return_crops", "per_frame_errors", "model_key", "pad_if_no_face", "regions", "expected_faces")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    RETURN_CROPS_FIELD_NUMBER: _ClassVar[int]
    PER_FRAME_ERRORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    PAD_IF_NO_FACE_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FACES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.NDArray]
    min_face_size: int
    min_score: float
    return_crops: bool
    per_frame_errors: bool
    model_key: str
    pad_if_no_face: bool
    regions: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    expected_faces: _containers.RepeatedCompositeFieldContainer[FaceBoxes]
    def __init__(self, frames: _Optional[_Iterable[_Union[_common_pb2.NDArray, _Mapping]]] = ..., min_face_size: _Optional[int] = ..., min_score: _Optional[float] = ..., return_crops: _Optional[bool] = ..., per_frame_errors: _Optional[bool] = ..., model_key: _Optional[str] = ..., pad_if_no_face: _Optional[bool] = ..., regions: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ..., expected_faces: _Optional[_Iterable[_Union[FaceBoxes, _Mapping]]] = ...) -> None: ...

class FaceBoxes(_message.Message):
    __slots__ = ("boxes",)
    BOXES_FIELD_NUMBER: _ClassVar[int]
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    def __init__(self, boxes: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ...) -> None: ...

class DetectedFace(_message.Message):
    __slots__ = ("face", "crop")
    FACE_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    face: _common_pb2.Face
    crop: _common_pb2.NDArray
    def __init__(self, face: _Optional[_Union[_common_pb2.Face, _Mapping]] = ..., crop: _Optional[_Union[_common_pb2.NDArray, _Mapping]] = ...) -> None: ...

class FrameFaces(_message.Message):
    __slots__ = ("faces", "error")
    FACES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[DetectedFace]
    error: str
    def __init__(self, faces: _Optional[_Iterable[_Union[DetectedFace, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("frames", "model_key")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    MODEL_KEY_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameFaces]
    model_key: str
    def __init__(self, frames: _Optional[_Iterable[_Union[FrameFaces, _Mapping]]] = ..., model_key: _Optional[str] = ...) -> None: ...
