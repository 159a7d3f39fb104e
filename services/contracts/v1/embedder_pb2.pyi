from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("crops", "each_crop", "draft")
    CROPS_FIELD_NUMBER: _ClassVar[int]
    EACH_CROP_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    crops: _common_pb2.NDArray
    each_crop: _containers.RepeatedCompositeFieldContainer[_common_pb2.NDArray]
    draft: bool
    def __init__(self, crops: _Optional[_Union[_common_pb2.NDArray, _Mapping]] = ..., each_crop: _Optional[_Iterable[_Union[_common_pb2.NDArray, _Mapping]]] = ..., draft: _Optional[bool] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings",)
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Embedding]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_common_pb2.Embedding, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
