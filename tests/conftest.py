"""Shared fixtures. The expensive one is `reference_work`: an assignment's release notebooks with the
reference solutions filled in, executed in the quick profile (with their artifacts), built once per session."""
import os

import pytest

os.environ.setdefault("LAB_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def reference_work(tmp_path_factory):
    from autograde.course import make_student_work
    cache = {}

    def build(assignment):
        if assignment not in cache:
            cache[assignment] = make_student_work(assignment, tmp_path_factory.mktemp(f"reference_{assignment}"))
        return cache[assignment]

    return build
