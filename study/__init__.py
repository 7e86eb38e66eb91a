"""Sweeps of spatial-augmentation studies: ``run_study(StudyConfig(...))`` or the ``study`` CLI
(:mod:`study_cli`)."""

from typing import Any

__all__ = [
    "StudyConfig",
    "StudyResult",
    "export_study",
    "finished_result",
    "list_studies",
    "resume_study",
    "run_study",
]
_HOMES = {
    "StudyConfig": "study.config",
    "StudyResult": "study.lifecycle",
    "run_study": "study.lifecycle",
    "resume_study": "study.lifecycle",
    "finished_result": "study.lifecycle",
    "export_study": "study.stored",
    "list_studies": "study.stored",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
