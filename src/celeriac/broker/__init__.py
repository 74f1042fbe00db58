"""Brokers: where messages wait and how deliveries are leased."""

from .base import Broker, DeadLetter, Delivery, Enqueue, QueueStats, Settlement, WorkerInfo
from .keys import KeySchema

__all__ = [
    "Broker",
    "DeadLetter",
    "Delivery",
    "Enqueue",
    "KeySchema",
    "QueueStats",
    "Settlement",
    "WorkerInfo",
]
