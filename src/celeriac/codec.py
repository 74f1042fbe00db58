"""One app's encoding policy: which content types it reads, and the keys its messages are signed with.

The wire format itself (and the layout of a signature) lives in :mod:`celeriac.message`; this module
binds it to an app's settings so that the producer (``App.send``), the execution semantics
(:mod:`celeriac.execution`, for workers and eager mode) and ``AsyncResult`` apply the same rules:

* messages are signed with ``message_signing_key`` when it is set, and a decoder with keys refuses
  unsigned or tampered messages (execution dead-letters them with that reason);
* pickle is used only for tasks that ask for it, and read only where ``accept_content`` lists it;
* a pickled result is signed like a message, and a reader with keys unpickles only a signed one;
* a result larger than ``result_max_bytes`` is refused (the task fails with :class:`ResultTooLarge`).

msgpack results are not signed: reading one runs no code, and unsigned deployments pay nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .exceptions import ConfigurationError, ResultTooLarge
from .message import SIGNED_RESULT, Message, decode, encode, is_signed, sign, unwrap
from .record import ResultRecord, decode_record, encode_record

if TYPE_CHECKING:
    from .config import Config


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)


@dataclass(frozen=True, repr=False)
class Codec:
    """Encodes and decodes messages and results under one app's settings.

    Args:
        accept_content: content types to read (``"msgpack"``, optionally ``"pickle"``).
        signing_key: key new messages (and pickled results) are signed with; None: unsigned.
        verify_keys: keys a signature may be made with, the signing key first; empty: signatures
            are not required (and stripped unchecked when present).
        result_max_bytes: largest encoded result accepted.
    """

    accept_content: frozenset[str] = frozenset({"msgpack"})
    signing_key: bytes | None = None
    verify_keys: tuple[bytes, ...] = ()
    result_max_bytes: int = 1 << 20

    def __repr__(self) -> str:  # keys are secrets
        return (
            f"<Codec accept={sorted(self.accept_content)} signed={self.signing_key is not None} "
            f"keys={len(self.verify_keys)} result_max_bytes={self.result_max_bytes}>"
        )

    @classmethod
    def from_config(cls, conf: Config) -> Codec:
        """The codec of these settings.

        Raises:
            ConfigurationError: ``message_signing_keys`` is set without ``message_signing_key``.
        """
        old = tuple(_key_bytes(k) for k in conf.message_signing_keys)
        key = _key_bytes(conf.message_signing_key) if conf.message_signing_key is not None else None
        if old and key is None:
            raise ConfigurationError(
                "message_signing_keys",
                "older keys are accepted only together with message_signing_key (the key new "
                "messages and retries are signed with)",
            )
        verify = (key, *(k for k in old if k != key)) if key is not None else ()
        if conf.result_serializer is not None and conf.result_serializer != conf.task_serializer:
            raise ConfigurationError(
                "result_serializer",
                f"{conf.result_serializer!r} differs from task_serializer={conf.task_serializer!r}: a "
                "result travels in its task's content type; set task_serializer instead (or a task's "
                "serializer=)",
            )
        return cls(frozenset(conf.accept_content), key, verify, conf.result_max_bytes)

    @property
    def accepts_pickle(self) -> bool:
        return "pickle" in self.accept_content

    # ---- messages ----------------------------------------------------------------------------------
    def encode(self, message: Message) -> bytes:
        """Encode (and sign, when a signing key is set) a message.

        Raises:
            SerializationError: an argument cannot be serialized.
            ConfigurationError: the message asks for pickle and ``accept_content`` does not list it.
        """
        if message.serializer == "pickle" and not self.accepts_pickle:
            raise ConfigurationError(
                "task_serializer",
                f"task {message.task!r} uses pickle, which this app does not accept: add 'pickle' to "
                "accept_content (here and on the workers) to opt in",
            )
        return encode(message, signing_key=self.signing_key)

    def decode(self, data: bytes) -> Message:
        """Decode a message, refusing unsigned, tampered or not-accepted content.

        Raises:
            DecodeError: never any other exception.
        """
        return decode(data, accept_content=self.accept_content, signing_keys=self.verify_keys)

    # ---- results -----------------------------------------------------------------------------------
    def encode_result(self, record: ResultRecord, message: Message) -> bytes:
        """Encode the result record of ``message``'s task (pickled when the task uses pickle).

        Raises:
            SerializationError: the value cannot be serialized.
            ResultTooLarge: the encoded record is larger than ``result_max_bytes``.
        """
        pickled = message.serializer == "pickle"
        payload = encode_record(record, pickled=pickled, as_json=message.serializer == "json")
        if pickled and self.signing_key is not None:
            payload = sign(payload, self.signing_key, SIGNED_RESULT)
        if len(payload) > self.result_max_bytes:
            raise ResultTooLarge(
                f"result of {message.task}[{message.id}] is {len(payload)} bytes encoded, over "
                f"result_max_bytes={self.result_max_bytes}; return a reference (a key, a path) instead",
                len(payload),
                self.result_max_bytes,
            )
        return payload

    def decode_result(self, task_id: str, payload: bytes) -> ResultRecord:
        """Decode a stored result record; a pickled value is unpickled only when pickle is accepted
        and, with signing keys set, only when its signature checks out.

        Raises:
            DecodeError: undecodable, tampered, or pickled where pickle is not accepted.
        """
        verified = False
        if is_signed(payload):
            payload = unwrap(payload, self.verify_keys, SIGNED_RESULT)
            verified = bool(self.verify_keys)
        unpickle = self.accepts_pickle and (verified or not self.verify_keys)
        return decode_record(task_id, payload, unpickle=unpickle)


__all__ = ["Codec"]
