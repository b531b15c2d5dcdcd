"""The gate steps of a training Job (spec.validate, spec.test): more init containers around
`rasa train`.

    validate   the Rasa image: `rasa data validate` on the project; a failure fails the pod
    train      (render/training.py)
    test       the Rasa image: `rasa test` of the trained model with the project's tests/
    gates      botenv's image: `botenv check-gates` reads rasa test's reports, checks the
               thresholds, writes a JSON summary to its termination message (the operator
               reads it from the pod's status) and to a file `botenv upload --gates` reads

A threshold that is not met does not fail the pod (a retry would train again for the same
answer): `botenv upload --gates` then stores nothing, so a model that failed a gate never
reaches storage, and the operator reports the failure and moves no tag."""

from __future__ import annotations

from typing import Any

from botenv.api.errors import SpecError
from botenv.api.gates import MIN_INTENT_F1, MIN_STORY_ACCURACY
from botenv.api.training import TrainingSpec
from botenv.render.workspace import OUT_DIR, PROJECT_DIR, WORK_DIR

VALIDATE_STEP, TEST_STEP, CHECK_STEP = "validate", "test", "gates"
# ConfigMap keys cannot hold '/': keys starting with this are files of the project's
# tests/ folder (`botenv train` flattens tests/a/b.yml to tests__a__b.yml), never
# training data.
TESTS_PREFIX = "tests__"
TESTS_DIR = f"{PROJECT_DIR}/tests"
RESULTS_DIR = f"{OUT_DIR}/test-results"  # rasa test --out
SUMMARY_FILE = f"{OUT_DIR}/gates.json"  # botenv check-gates --summary, upload --gates
TERMINATION_LOG = "/dev/termination-log"
FLAGS = {MIN_INTENT_F1: "--min-intent-f1", MIN_STORY_ACCURACY: "--min-story-accuracy"}


def project_path(key: str) -> str:
    """Where a data key of the source ConfigMap goes in the project."""
    if key.startswith(TESTS_PREFIX) and key != TESTS_PREFIX:
        return f"tests/{key.removeprefix(TESTS_PREFIX)}"
    return f"data/{key}"


def is_test_file(key: str) -> bool:
    return project_path(key).startswith("tests/")


def check_test_data(spec: TrainingSpec, keys: list[str]) -> None:
    """spec.test needs test data; a ConfigMap's keys tell before anything runs (an archive's
    tests/ folder is seen only by `rasa test`)."""
    if spec.gates.test is not None and spec.archive is None and not any(map(is_test_file, keys)):
        raise SpecError(
            [
                f"spec.test: ConfigMap {spec.config_map!r} (spec.source.configMap.name) has "
                f"no test data: add the project's tests/ files as keys {TESTS_PREFIX}NAME.yml "
                f"(e.g. {TESTS_PREFIX}test_stories.yml; `botenv train DIR` packs tests/ so)"
            ]
        )


def _rasa_step(spec: TrainingSpec, name: str, args: list[str], out: bool) -> dict[str, Any]:
    mounts = [{"name": "project", "mountPath": PROJECT_DIR, "readOnly": True}]
    if out:
        mounts.append({"name": "out", "mountPath": OUT_DIR})
    mounts.append({"name": "work", "mountPath": WORK_DIR})
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        "args": args,
        # As `rasa train`: Rasa writes its cache and temporary files where it runs, and a
        # failure's last log lines reach the status through the termination message.
        "workingDir": WORK_DIR,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "env": [{"name": "HOME", "value": WORK_DIR}],
        "volumeMounts": mounts,
    }
    if spec.resources:
        container["resources"] = spec.resources
    return container


def before_training(spec: TrainingSpec) -> list[dict[str, Any]]:
    if not spec.gates.validate:
        return []
    args = [
        "data",
        "validate",
        "--config",
        f"{PROJECT_DIR}/config.yml",
        "--domain",
        f"{PROJECT_DIR}/domain.yml",
        "--data",
        f"{PROJECT_DIR}/data",
        *(["--fail-on-warnings"] if spec.gates.fail_on_warnings else []),
    ]
    return [_rasa_step(spec, VALIDATE_STEP, args, out=False)]


def after_training(spec: TrainingSpec, botenv_image: str) -> list[dict[str, Any]]:
    test = spec.gates.test
    if test is None:
        return []
    rasa_test = _rasa_step(
        spec,
        TEST_STEP,
        [
            "test",
            "--model",
            f"{OUT_DIR}/{spec.model_name}",
            "--stories",
            TESTS_DIR,
            "--nlu",
            TESTS_DIR,
            "--domain",
            f"{PROJECT_DIR}/domain.yml",
            "--out",
            RESULTS_DIR,
            "--no-plot",
        ],
        out=True,
    )
    thresholds = [a for k, v in test.thresholds().items() for a in (FLAGS[k], repr(v))]
    check = {
        "name": CHECK_STEP,
        "image": botenv_image,
        "args": [
            "check-gates",
            "--results",
            RESULTS_DIR,
            *thresholds,
            "--summary",
            SUMMARY_FILE,
            # given as an argument, so a node that maps paths (the local node) finds it
            "--termination-log",
            TERMINATION_LOG,
        ],
        "volumeMounts": [{"name": "out", "mountPath": OUT_DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }
    return [rasa_test, check]


def upload_args(spec: TrainingSpec) -> list[str]:
    """`botenv upload` stores the model only if the summary says every gate passed."""
    return ["--gates", SUMMARY_FILE] if spec.gates.test is not None else []
