"""A ModelTraining's gates: checks the project and the trained model must pass before the
model is stored and its tag moves (`rasa data validate` before training, `rasa test` after)."""

from __future__ import annotations

import dataclasses

from botenv.api.reader import Reader

# The names of the gates as they appear in status.gates (and as thresholds in spec.test).
VALIDATE = "validate"
TEST = "test"
MIN_INTENT_F1 = "minIntentF1"
MIN_STORY_ACCURACY = "minStoryAccuracy"
THRESHOLDS = (MIN_INTENT_F1, MIN_STORY_ACCURACY)


@dataclasses.dataclass(frozen=True)
class TestGate:
    """`rasa test` on the trained model with the project's tests/ (test stories and NLU
    test data); each threshold set here must be met. No threshold: the figures are only
    reported."""

    __test__ = False  # not a pytest test class, despite its name

    min_intent_f1: float | None = None
    min_story_accuracy: float | None = None

    def thresholds(self) -> dict[str, float]:
        """The thresholds that are set, by their spec name."""
        found = {MIN_INTENT_F1: self.min_intent_f1, MIN_STORY_ACCURACY: self.min_story_accuracy}
        return {k: v for k, v in found.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class GatesSpec:
    validate: bool = False  # rasa data validate before training
    fail_on_warnings: bool = False  # ... with --fail-on-warnings
    test: TestGate | None = None  # rasa test after training

    @property
    def any(self) -> bool:
        return self.validate or self.test is not None


def _fraction(reader: Reader, key: str) -> float | None:
    value = reader.data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        reader.fail(f"{reader.path}.{key}", f"must be a number from 0 to 1, got {value!r}")
        return None
    return float(value)


def parse_gates(spec: Reader) -> GatesSpec:
    """spec.validate, spec.failOnWarnings and spec.test of a ModelTraining; problems are
    added to the reader's list with their field paths."""
    validate = bool(spec.flag("validate", False))
    fail_on_warnings = bool(spec.flag("failOnWarnings", False))
    if fail_on_warnings and not validate:
        spec.fail(
            "spec.failOnWarnings",
            "needs spec.validate: true (it makes rasa data validate's warnings fail the gate)",
        )
    test = None
    reader = spec.child("test")
    if reader is not None:
        test = TestGate(
            min_intent_f1=_fraction(reader, MIN_INTENT_F1),
            min_story_accuracy=_fraction(reader, MIN_STORY_ACCURACY),
        )
    return GatesSpec(validate=validate, fail_on_warnings=fail_on_warnings, test=test)
