"""Brokers: where messages wait and how deliveries are leased."""

from .._redis.keys import KeySchema
from .base import (
    Admin,
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    Enqueue,
    Producer,
    QueueStats,
    ResultSettling,
    Settlement,
    WorkerInfo,
)

__all__ = [
    "Admin",
    "Broker",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Enqueue",
    "KeySchema",
    "Producer",
    "QueueStats",
    "ResultSettling",
    "Settlement",
    "WorkerInfo",
]
