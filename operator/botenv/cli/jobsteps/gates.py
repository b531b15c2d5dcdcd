"""`botenv check-gates`: the step of a training Job after `rasa test`. It reads the reports
rasa test wrote (intent_report.json, story_report.json), checks a ModelTraining's
thresholds (spec.test) and writes a compact JSON summary: to --summary, which `botenv upload
--gates` reads (it stores the model only when every gate passed), and to the container's
termination message, which the operator reads from the pod's status (no pod logs needed).

A threshold that is not met is an answer, not an error: the step exits 0 and says so in the
summary (a failed pod would be retried and train again for the same answer)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from botenv.api.gates import MIN_INTENT_F1, MIN_STORY_ACCURACY
from botenv.cli.shared import EXIT_FAILED, EXIT_OK, StepError, step_progress

# What the kubelet keeps of a termination message; the summary stays well below it.
MAX_MESSAGE = 4096
MAX_GATE_MESSAGE = 300

DESCRIPTION = """\
Check the figures `rasa test` wrote into --results against the thresholds given, and write
one JSON object {"passed", "gates": [{name, passed, value, threshold, message}], "figures"}
to stdout, to --summary and to --termination-log. Figures: intentF1 and intentAccuracy
(intent_report.json: the weighted average over nluExamples NLU test examples), storyAccuracy
(story_report.json: the share of the test stories whose every action was predicted),
stories, storiesCorrect, and actionAccuracy."""

EPILOG = """\
exit codes:
  0  the summary was written (whether or not every gate passed: see "passed")
  1  --results is not a directory of rasa test's reports, or a report is not JSON
  2  usage error"""


class GatesError(StepError):
    """A failure to report as `error: ...` with exit code 1."""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def add_gates_command(sub: argparse._SubParsersAction) -> None:
    """Register `check-gates` on botenv's subcommands (botenv.cli.parser)."""
    p = sub.add_parser(
        "check-gates",
        help="check rasa test's figures against a training's thresholds (a Job step)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--results", required=True, metavar="DIR", help="rasa test --out")
    p.add_argument("--min-intent-f1", type=_fraction, metavar="F", help="spec.test.minIntentF1")
    p.add_argument(
        "--min-story-accuracy", type=_fraction, metavar="F", help="spec.test.minStoryAccuracy"
    )
    p.add_argument("--summary", metavar="FILE", help="also write the summary here")
    p.add_argument(
        "--termination-log",
        metavar="FILE",
        help="the container's terminationMessagePath (/dev/termination-log)",
    )
    p.set_defaults(func=cmd_check_gates)


def cmd_check_gates(args: argparse.Namespace) -> int:
    thresholds = {
        name: value
        for name, value in (
            (MIN_INTENT_F1, args.min_intent_f1),
            (MIN_STORY_ACCURACY, args.min_story_accuracy),
        )
        if value is not None
    }
    try:
        summary = evaluate(read_figures(Path(args.results)), thresholds)
        text = encode(summary)
    except StepError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    for gate in summary["gates"]:
        verdict = "passed" if gate["passed"] else "FAILED"
        step_progress("check-gates", f"{verdict}: {gate['message']}")
    for path in (args.summary, args.termination_log):
        if path:
            Path(path).write_text(text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return EXIT_OK


def _report(results: Path, name: str) -> dict[str, Any]:
    path = results / name
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text())
    except ValueError as exc:
        raise GatesError(f"{path}: not JSON ({exc})") from None
    return report if isinstance(report, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return round(float(value), 4)


def read_figures(results: Path) -> dict[str, float]:
    """The figures of rasa test's reports in `results` (absent ones are left out: no NLU
    examples, no test stories)."""
    if not results.is_dir():
        raise GatesError(f"--results {results}: no such directory (did rasa test run?)")
    intents = _report(results, "intent_report.json")
    stories = _report(results, "story_report.json")
    weighted = intents.get("weighted avg") or {}
    conversations = stories.get("conversation_accuracy") or {}
    found = {
        "intentF1": _number(weighted.get("f1-score")),
        "intentAccuracy": _number(intents.get("accuracy")),
        "nluExamples": _number(weighted.get("support")),
        "actionAccuracy": _number(stories.get("accuracy")),
    }
    if _number(conversations.get("total")):  # Rasa writes {} when there were no stories
        found.update(
            storyAccuracy=_number(conversations.get("accuracy")),
            stories=_number(conversations.get("total")),
            storiesCorrect=_number(conversations.get("correct")),
        )
    return {k: v for k, v in found.items() if v is not None}


def _gate(name: str, value: float | None, threshold: float, measured: str, missing: str) -> dict:
    if value is None:
        return {"name": name, "passed": False, "threshold": threshold, "message": missing}
    passed = value >= threshold
    verdict = "meets" if passed else "is below"
    return {
        "name": name,
        "passed": passed,
        "value": value,
        "threshold": threshold,
        "message": f"{measured} {value:.3f} {verdict} {name} {threshold:g}"[:MAX_GATE_MESSAGE],
    }


def evaluate(figures: dict[str, float], thresholds: dict[str, float]) -> dict[str, Any]:
    """The summary: each threshold passed or not, with the figure it was checked against."""
    gates = []
    if MIN_INTENT_F1 in thresholds:
        examples = int(figures.get("nluExamples", 0))
        gates.append(
            _gate(
                MIN_INTENT_F1,
                figures.get("intentF1"),
                thresholds[MIN_INTENT_F1],
                f"intent F1 (weighted average over {examples} NLU test examples)",
                "no NLU test examples were evaluated: put NLU test data, or test stories "
                "with user messages, in the project's tests/",
            )
        )
    if MIN_STORY_ACCURACY in thresholds:
        stories = int(figures.get("stories", 0))
        correct = int(figures.get("storiesCorrect", 0))
        gates.append(
            _gate(
                MIN_STORY_ACCURACY,
                figures.get("storyAccuracy"),
                thresholds[MIN_STORY_ACCURACY],
                f"story accuracy ({correct} of {stories} test stories right)",
                "no test stories were evaluated: put test stories (files named test_*.yml) "
                "in the project's tests/",
            )
        )
    return {"passed": all(g["passed"] for g in gates), "gates": gates, "figures": figures}


def encode(summary: dict[str, Any]) -> str:
    """Compact JSON, within what a termination message keeps."""
    text = json.dumps(summary, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_MESSAGE:  # cannot happen with two gates; never cut JSON
        raise GatesError(f"the summary is {len(text)} bytes, over {MAX_MESSAGE}")
    return text
