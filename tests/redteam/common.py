# ---- where a hostile cell looks for what is not its own: every folder above its working directory, the
# kit's checkout and the course root (both guessable, e.g. from a TA's README or an error message).
import sqlite3 as _rt_sqlite3
from contextlib import closing as _rt_closing
from pathlib import Path as _RtPath

_RT_COURSE = _RtPath(__COURSE__)
_RT_REPO = _RtPath(__REPO__)
_RT_ME, _RT_VICTIM = __ME__, __VICTIM__


def _rt_roots():
    try:
        here = _RtPath.cwd().resolve()
        above = [here, *here.parents]
    except OSError:                   # the working directory was deleted under us
        above = []
    roots = []
    for root in [*above, _RT_REPO, _RT_COURSE]:
        if root not in roots:
            roots.append(root)
    return roots


def _rt_glob(pattern):
    """Files matching `pattern` under any root, each once."""
    found = {}
    for root in _rt_roots():
        try:
            for path in root.glob(pattern):
                if path.is_file():
                    found.setdefault(path.resolve(), path)
        except OSError:
            pass
    return list(found.values())


def _rt_gradebooks():
    """The course gradebook, the cohort's template and every scratch gradebook in reach."""
    return [*_rt_glob("grading/gradebook.db"), *_rt_glob("grading/cohort/*/*.db"),
            *_rt_glob("grading/cohort/*/*/grading/gradebook.db")]


_RT_GRADES = """SELECT grade.id, grade_cells.max_score FROM grade
    JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id
    JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id
    JOIN grade_cells ON grade.cell_id = grade_cells.id
    WHERE submitted_assignment.student_id = ?"""


def _rt_set_grades(db, student, score=None, extra=None):
    """Every grade of `student` in gradebook `db` set to `score` (None: its maximum), auto and manual, plus
    `extra` credit; returns how many grades were changed."""
    with _rt_closing(_rt_sqlite3.connect(db, timeout=10)) as con:
        rows = con.execute(_RT_GRADES, (student,)).fetchall()
        for grade_id, max_score in rows:
            value = max_score if score is None else score
            con.execute("UPDATE grade SET auto_score = ?, manual_score = ?, extra_credit = ? WHERE id = ?",
                        (value, value, extra, grade_id))
        con.commit()
    return len(rows)
# ---- end of the shared part
