"""Every exercise of the series by name, with its task, difficulty, time, tiered hints and solution.

Help comes in steps, so a learner gets only as much as they ask for: running a stub prints the task;
hint(name) gives the concept, a second call the next step; only reveal(name) prints code.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXERCISES", "Exercise", "WORKSHOP_MINUTES", "WORKSHOP_PLAN", "hint", "register", "reveal",
           "workshop_schedule", "workshop_slack"]


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to do, how hard (1-3 stars), how long, its hints in order, and a solution."""

    name: str
    notebook: str
    task: str
    difficulty: int
    minutes: int
    hints: tuple[str, ...]
    solution: str
    takes_function: bool = True

    def header(self) -> str:
        """ "rms_norm (02, ★★☆, about 15 min)": what a stub prints before the task."""
        stars = "★" * self.difficulty + "☆" * (3 - self.difficulty)
        return f"{self.name} ({self.notebook}, {stars}, about {self.minutes} min)"


EXERCISES: dict[str, Exercise] = {}
_hints_given: dict[str, int] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the catalogue; its name is what hint() and reveal() take."""
    if exercise.name in EXERCISES:
        raise ValueError(f"two exercises are named {exercise.name!r}; give each a unique name")
    if not 1 <= exercise.difficulty <= 3 or not exercise.hints:
        raise ValueError(f"exercise {exercise.name!r} needs a difficulty of 1-3 stars and at least one hint")
    EXERCISES[exercise.name] = exercise
    return exercise


def _find(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; the names are: {', '.join(sorted(EXERCISES))}")
    return EXERCISES[name]


def hint(name: str) -> None:
    """Print the next hint for an exercise: the concept first, then the next step, one per call."""
    exercise = _find(name)
    given = _hints_given.get(name, 0)
    if given >= len(exercise.hints):
        print(f"no more hints for {name}; exercises.reveal({name!r}) prints a solution")
        return
    _hints_given[name] = given + 1
    more = (f"; call exercises.hint({name!r}) again for the next step" if given + 1 < len(exercise.hints)
            else f"; that was the last hint (exercises.reveal({name!r}) prints a solution)")
    print(f"hint {given + 1} of {len(exercise.hints)} for {name}: {exercise.hints[given]}{more}")


def reveal(name: str) -> None:
    """Print a solution's code: the explicit last step, after the hints."""
    print(_find(name).solution)


WORKSHOP_MINUTES = 180
"""The workshop's stated length (notebook 10 and the README's instructor guide say 3 hours)."""

WORKSHOP_PLAN: tuple[str | tuple[str, int], ...] = (
    ("welcome and set-up check", 10), "rms_norm", "rope", "decode_step", ("break", 15),
    "induction_scores", "induction_head", "patching", ("wrap-up with 10_workshop_solutions.ipynb", 15),
)
"""The workshop in order: an exercise by its name (its minutes come from the catalogue), anything else with its own."""


def workshop_schedule() -> list[tuple[str, int]]:
    """(what, minutes) for every part of the workshop, exercises timed by their catalogue entry."""
    return [(part, _find(part).minutes) if isinstance(part, str) else part for part in WORKSHOP_PLAN]


def workshop_slack() -> int:
    """Minutes of the stated length that no part of the plan uses: room for questions and for slower pairs."""
    return WORKSHOP_MINUTES - sum(minutes for _, minutes in workshop_schedule())
