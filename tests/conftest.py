"""Shared fixtures. The expensive one is `reference_work`: an assignment's release notebooks with the
reference solutions filled in, executed in the quick profile (with their artifacts), built once per session."""
import os

import pytest

os.environ.setdefault("LAB_PROFILE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def reference_work(tmp_path_factory):
    from autograde.course import make_student_work
    root, cache = tmp_path_factory.mktemp("reference"), {}

    def build(assignment):
        # Side by side, as in a student's folder: kd, built after slimming, takes its teacher from there.
        if assignment not in cache:
            cache[assignment] = make_student_work(assignment, root / assignment)
        return cache[assignment]

    return build
