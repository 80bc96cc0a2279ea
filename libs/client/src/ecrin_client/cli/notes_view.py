"""Notes as a practitioner reads them: labelled lines, not JSON (``--json`` gives the JSON).

One function per kind of :mod:`ecrin_client.kine`; a kind this version does not know, or a
field it does not know, is still shown (as ``label: value``), never dropped.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

_LABELS = {
    "date": "Date", "acts": "Actes", "pain": "Douleur (EVA)", "notes": "Notes",
    "motif": "Motif", "prescription_ref": "Prescription", "anamnesis": "Anamnèse",
    "clinical_exam": "Examen clinique", "diagnostic_kine": "Diagnostic kiné",
    "objectives": "Objectifs", "plan": "Plan de traitement", "exercises": "Exercices",
    "name": "Nom", "birth_date": "Date de naissance", "ins": "INS", "phone": "Téléphone",
    "email": "Email",
}


def _day(value: Any) -> str:
    """04/05/2001: dates as they were typed in France."""
    try:
        return dt.date.fromisoformat(str(value)).strftime("%d/%m/%Y")
    except ValueError:
        return str(value)


def exercise_line(exercise: dict[str, Any]) -> str:
    """'Gainage: 3 × 30 s, daily' or 'Squats: 3 × 12'."""
    sets = exercise.get("sets", 1)
    if exercise.get("hold_seconds"):
        seconds = int(exercise["hold_seconds"])
        amount = (f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 and seconds % 60
                  else f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s")
    else:
        amount = str(exercise.get("reps", 1))
    line = f"{exercise.get('name', '?')}: {sets} × {amount}"
    if exercise.get("frequency"):
        line += f", {exercise['frequency']}"
    if exercise.get("instructions"):
        line += f" ({exercise['instructions']})"
    return line


def _value(key: str, value: Any) -> list[str]:
    """The lines of one field (a list gives one bullet a line)."""
    if key in ("date", "birth_date"):
        return [_day(value)]
    if key == "pain" and value is not None:
        return [f"{value}/10"]
    if key == "exercises" and isinstance(value, list):
        return [f"• {exercise_line(e) if isinstance(e, dict) else e}" for e in value]
    if isinstance(value, list):
        return [f"• {item}" for item in value]
    if isinstance(value, dict):
        return [f"{k}: {v}" for k, v in value.items()]
    return [str(value)]


def print_note(console: Console, content: Any) -> None:
    """Every non-empty field, labelled, in the model's order."""
    if not isinstance(content, dict):
        console.print_json(data=content)
        return
    for key, value in content.items():
        if value in (None, "", [], {}):
            continue
        label = _LABELS.get(key, key.replace("_", " ").capitalize())
        lines = _value(key, value)
        if len(lines) == 1 and "\n" not in lines[0] and key not in ("exercises",
                                                                    "objectives"):
            console.print(f"[bold]{label}:[/] {escape(lines[0])}")
        else:
            console.print(f"[bold]{label}:[/]")
            for line in lines:
                console.print("  " + escape(line).replace("\n", "\n  "))
