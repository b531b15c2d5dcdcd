"""The test kubelet: botenv's local node (botenv.local.node) with the cached Rasa venv.

``TestKubelet`` is ``botenv.local.node.LocalKubelet`` whose ``RASA_PYTHON`` is the
interpreter of the cached Rasa 3.6.21 venv (botenv.local.rasa). See botenv.local.node
for what it emulates and what it does not.
"""

from __future__ import annotations

from botenv.local.node import (
    BUILTIN_IMAGES,
    DEFAULT_NODE,
    DEFAULT_SELECTOR,
    PYTHON,
    RASA_ENV,
    RASA_PYTHON,
    BindHook,
    Image,
    KubeletError,
    LocalKubelet,
    ProcessInfo,
    expand,
    rasa_image,
    rasa_sdk_image,
    repository,
)
from tests.support.rasa import rasa_python

__all__ = [
    "BUILTIN_IMAGES",
    "DEFAULT_NODE",
    "DEFAULT_SELECTOR",
    "PYTHON",
    "RASA_ENV",
    "RASA_PYTHON",
    "BindHook",
    "Image",
    "KubeletError",
    "ProcessInfo",
    "TestKubelet",
    "expand",
    "rasa_image",
    "rasa_sdk_image",
    "repository",
]


class TestKubelet(LocalKubelet):
    """A LocalKubelet that runs RASA_PYTHON as the cached Rasa venv's interpreter."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("rasa_python", rasa_python)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
