"""Sweeps of spatial-augmentation studies: ``run_study(StudyConfig(...))`` or the ``study`` CLI."""

from typing import Any

__all__ = ["StudyConfig", "StudyResult", "export_study", "list_studies", "resume_study", "run_study"]


def __getattr__(name: str) -> Any:
    if name == "StudyConfig":
        from study.config import StudyConfig

        return StudyConfig
    if name in __all__:
        from study import sweep

        return getattr(sweep, name)
    raise AttributeError(name)
