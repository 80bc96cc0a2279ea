"""What a kiné writes, as typed models: encrypted on the device, never seen by a server.

Each record's *metadata* (:class:`RecordMetadata`: title, kind, content type, dates,
size) is encrypted and padded by ``ecrin_e2ee`` in the record header's companion
ciphertext; its *content* is either one of the JSON models below (a bilan, a session
note, an exercise program, the patient's identity) or a binary document (PDF, JPEG, PNG).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ecrin_client.errors import InvalidInput
from ecrin_e2ee import FormatError, normalise_ins

__all__ = [
    "CONTENT_TYPES",
    "DOCUMENT_KINDS",
    "KINDS",
    "NOTE_KINDS",
    "Bilan",
    "Exercise",
    "ExerciseProgram",
    "PatientIdentity",
    "RecordMetadata",
    "SessionNote",
    "default_scope",
    "note_model",
    "parse_day",
    "sniff_content_type",
]

JSON_TYPE = "application/json"
#: Binary documents accepted, by their magic bytes.
CONTENT_TYPES = {"application/pdf": b"%PDF-", "image/jpeg": b"\xff\xd8\xff",
                 "image/png": b"\x89PNG\r\n\x1a\n"}
NOTE_KINDS = ("bilan", "session-note", "exercise-program")
DOCUMENT_KINDS = ("prescription", "imaging", "letter", "report", "document")
KINDS = ("patient-identity", *NOTE_KINDS, *DOCUMENT_KINDS)
Scope = Literal["clinical", "shared", "administrative"]
Text = Annotated[str, Field(max_length=20_000)]


_FRENCH_DAY = re.compile(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})")


def parse_day(text: str, what: str = "date") -> dt.date:
    """A day as people write it in France, JJ/MM/AAAA (also with ``.`` or ``-``, one-digit
    day and month allowed), or as ISO 8601, AAAA-MM-JJ."""
    value = text.strip()
    try:
        match = _FRENCH_DAY.fullmatch(value)
        if match:
            day, month, year = (int(part) for part in match.groups())
            return dt.date(year, month, day)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what}: {text!r} is not a date (JJ/MM/AAAA or AAAA-MM-JJ, "
                           "e.g. 04/05/2001)") from None


class _Content(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True,
                              defer_build=True)  # built on first use (start-up time)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode("utf-8")


class PatientIdentity(_Content):
    """The administrative identity: only ever stored encrypted (scope ``administrative``)."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    birth_date: dt.date
    ins: str | None = None
    phone: Annotated[str | None, Field(max_length=40)] = None
    email: Annotated[str | None, Field(max_length=200)] = None

    @field_validator("ins")
    @classmethod
    def _valid_ins(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            normalise_ins(value)
        except FormatError as exc:
            raise ValueError(str(exc)) from None
        return value.replace(" ", "")


class Bilan(_Content):
    """Bilan diagnostic kinésithérapique."""

    date: dt.date
    motif: Text
    prescription_ref: Annotated[str | None, Field(max_length=200)] = None
    anamnesis: Text = ""
    clinical_exam: Text = ""
    diagnostic_kine: Text = ""
    objectives: list[Text] = []
    plan: Text = ""


class SessionNote(_Content):
    date: dt.date
    #: NGAP / AMK codes as written on the feuille de soins, e.g. "AMK 7.5".
    acts: list[Annotated[str, Field(max_length=40)]] = []
    pain: Annotated[int | None, Field(ge=0, le=10, description="EVA pain scale 0-10")] = None
    notes: Text = ""


class Exercise(_Content):
    """One exercise: ``sets`` of ``reps`` repetitions, or of a position held ``hold_seconds``
    (a plank, a stretch); one of the two, never both."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    sets: Annotated[int, Field(ge=1, le=100)] = 1
    reps: Annotated[int | None, Field(ge=1, le=1000)] = None
    hold_seconds: Annotated[int | None, Field(ge=1, le=3600)] = None
    frequency: Annotated[str, Field(max_length=100)] = ""
    instructions: Text = ""

    @model_validator(mode="after")
    def _reps_or_hold(self) -> Exercise:
        if self.reps is not None and self.hold_seconds is not None:
            raise ValueError("give reps or a hold duration, not both")
        if self.reps is None and self.hold_seconds is None:
            self.reps = 1  # what a program written before hold durations meant
        return self


class ExerciseProgram(_Content):
    date: dt.date
    exercises: list[Exercise] = Field(min_length=1)
    notes: Text = ""


_NOTE_MODELS: dict[str, type[_Content]] = {
    "bilan": Bilan, "session-note": SessionNote, "exercise-program": ExerciseProgram,
    "patient-identity": PatientIdentity,
}


def note_model(kind: str) -> type[_Content]:
    try:
        return _NOTE_MODELS[kind]
    except KeyError:
        raise InvalidInput(f"kind must be one of {', '.join(_NOTE_MODELS)}") from None


def parse_note(kind: str, data: Any) -> _Content:
    """Validate JSON (bytes, text or an object) as the model of ``kind``."""
    model = note_model(kind)
    try:
        if isinstance(data, bytes | str):
            return model.model_validate_json(data)
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or kind
        raise InvalidInput(f"invalid {kind}: {where}: {first['msg']}") from None


def default_scope(kind: str) -> Scope:
    """Identity is administrative; programs and prescriptions are for the patient side."""
    if kind == "patient-identity":
        return "administrative"
    if kind in ("exercise-program", "prescription", "letter"):
        return "shared"
    return "clinical"


class RecordMetadata(BaseModel):
    """The encrypted metadata of a record version (the server sees only its padded size)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    title: Annotated[str, Field(max_length=500)]
    kind: str
    content_type: str
    size: int = Field(ge=0)
    created_at: dt.datetime
    #: The date the content is about (a session's date), when it has one.
    date: dt.date | None = None
    filename: Annotated[str | None, Field(max_length=255)] = None

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json(exclude_none=True))


DOCUMENT_NAMES = {"application/pdf": "a PDF document", "image/jpeg": "a JPEG image",
                  "image/png": "a PNG image"}


def document_name(content_type: str) -> str:
    """How to name a document's type in a sentence: "a PDF document", "a PNG image"."""
    return DOCUMENT_NAMES.get(content_type, f"a document of type {content_type}")


def sniff_content_type(head: bytes) -> str:
    """The content type of a PDF, JPEG or PNG from its first bytes; anything else refused."""
    if not head:
        raise InvalidInput("the file is empty")
    for content_type, magic in CONTENT_TYPES.items():
        if head.startswith(magic):
            return content_type
    raise InvalidInput("only PDF, JPEG and PNG documents are accepted")
