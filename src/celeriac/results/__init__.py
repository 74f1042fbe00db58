"""Result backends: where task outcomes are stored when a caller asked for them."""

from .base import ResultBackend, ResultRecord, StoreResult, decode_record, encode_record
from .memory import MemoryResultBackend
from .redis import RedisResultBackend

__all__ = [
    "MemoryResultBackend",
    "RedisResultBackend",
    "ResultBackend",
    "ResultRecord",
    "StoreResult",
    "decode_record",
    "encode_record",
]
