"""What the checker reports: one :class:`Finding` per place in the project, grouped in a :class:`Report`."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """How a piece of a Celery project fares under celeriac."""

    #: works once ``celery`` is replaced by ``celeriac`` (imports, command names)
    PORTS = "ports"
    #: needs a further edit, given in :attr:`Finding.edit`
    EDIT = "edit"
    #: works, but celeriac behaves differently; :attr:`Finding.note` says how
    DIFFERS = "differs"


@dataclass(frozen=True)
class Finding:
    """One place in the project.

    Attributes:
        path: file, relative to the scanned folder.
        line: 1-based line number.
        kind: what was found: ``import``, ``setting``, ``task option``, ``app argument``,
            ``app method``, ``command``, ``flag``.
        subject: the thing itself (``task_acks_late``, ``--without-gossip``, ``celery.signals``).
        status: the verdict.
        edit: for :attr:`Status.EDIT`, what to write instead (or to remove).
        note: why, or what differs.
    """

    path: str
    line: int
    kind: str
    subject: str
    status: Status
    edit: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data


@dataclass
class Report:
    """Every finding of one scan, in file and line order, and the files read."""

    root: str
    files: list[str] = field(default_factory=list)
    #: files not read, with the reason (too large, unreadable)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def by_status(self, status: Status) -> list[Finding]:
        return [f for f in self.findings if f.status is status]

    def summary(self) -> dict[str, int]:
        return {s.value: len(self.by_status(s)) for s in Status} | {"files": len(self.files)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "summary": self.summary(),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "findings": [f.as_dict() for f in self.findings],
        }
