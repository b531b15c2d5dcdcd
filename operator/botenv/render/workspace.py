"""Where a training Job's steps find the project, write the model and keep Rasa's files:
the mount paths of its volumes, shared by every step."""

from __future__ import annotations

PROJECT_DIR = "/workspace/project"
OUT_DIR = "/workspace/out"
WORK_DIR = "/workspace/work"
