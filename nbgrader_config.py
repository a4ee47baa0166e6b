"""nbgrader configuration: the repository root is the course directory.

    solutions/<assignment>/   nbgrader's source (reference solutions + hidden tests), edited by the instructor
    labs/<assignment>/        nbgrader's release, generated: `make labs` (never edit by hand)
    grading/                  everything else nbgrader writes (git-ignored): submitted/, autograded/,
                              feedback/, the exchange, the gradebook and grades.csv (made by this file)
"""
from pathlib import Path

from nbgrader.converters import GenerateAssignment

from autograde.trusted import AUTOGRADE_PREPROCESSORS
from lib import submit

c = get_config()  # noqa: F821  (nbgrader provides get_config)
KIT = Path(__file__).resolve().parent

c.CourseDirectory.course_id = "compresslab"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.solution_directory = "grading/source_solutions"
c.CourseDirectory.db_url = "sqlite:///grading/gradebook.db"
c.Exchange.root = "grading/exchange"
c.Exchange.path_includes_course = True
c.ExportPlugin.to = "grading/grades.csv"     # `nbgrader export`; its --to still wins

# nbgrader creates the gradebook but not the folder it lives in. Without grading/ (a fresh clone) every command
# that opens the gradebook fails with "unable to open database file", and `generate_assignment --force` has
# deleted labs/<assignment> by then. (An error raised here would make nbgrader skip this whole file: ignore it,
# nbgrader then reports the gradebook it cannot open.)
try:
    (KIT / "grading").mkdir(exist_ok=True)
except OSError:
    pass

# Submissions carry checkpoints (artifacts/*.pt): a full-profile VGG-19 is ~80 MB. Larger files are dropped
# with a warning (the grader then treats the artifact as missing). The limit lives in lib/submit.py, which
# students run to zip their work, so that it warns them of a file over it before they upload.
c.CourseDirectory.max_file_size = submit.MAX_FILE_KB   # kB

# `nbgrader autograde` in this course is the trusted path: each student's kernel runs in the sandbox and the
# scores come from the referee, outside it (autograde/referee.py). `python -m autograde.cohort` runs the same
# pipeline, and adds workers, time and memory limits, repairs of broken notebooks and resumable progress.
c.Autograde.autograde_preprocessors = AUTOGRADE_PREPROCESSORS

# Grading mode loads the submitted artifacts instead of training (lib.train.fit_or_load), so no cell
# should take long; this only stops a runaway cell (e.g. an infinite loop in a TODO).
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True

# A grade cell with any stderr output scores zero: drop the harmless warnings that libraries print.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(UserWarning|DeprecationWarning|FutureWarning|RuntimeWarning|warnings\.warn|TqdmWarning)"

# `nbgrader validate` (and the Validate button) reports every cell that fails, not only the grade cells: a cell
# that needs a missing artifact says which notebook makes it (lib.artifacts), and the grade cells after it
# would only say NameError. Validating trains and writes nothing (lib.profile.validating).
c.Validator.validate_all = True
c.Validator.width = 1000   # and in full: by default it cuts every line of an error at 90 characters

# A submission that deleted a grade cell gets it back (and its points) instead of a crash.
c.OverwriteCells.add_missing_cells = True

# Files autograde must take from the student, never from solutions/: whatever the notebooks wrote under
# artifacts/ should an instructor have run the solution notebooks in place. (Adding "artifacts" to
# CourseDirectory.ignore instead would also drop the students' own artifacts from their submissions.)
# The kit's own solutions/ folder, found from this file (not from the working directory), so that courses
# whose config loads this one (load_subconfig: the tests, the demo, the cohort runner) are protected too.
KIT_SOURCE = KIT / "solutions"
c.Autograde.exclude_overwriting = {
    folder.name: [str(path.relative_to(folder)) for path in folder.glob("artifacts/**/*") if path.is_file()]
    for folder in KIT_SOURCE.glob("*") if folder.is_dir()
}

# Releases never carry solutions/<assignment>/artifacts/ (what running a solution notebook in place leaves):
# whichever command releases (`make labs`, a plain `nbgrader generate_assignment`, the formgrader), the kit's
# guard refuses it before nbgrader deletes the old release or copies anything (autograde/labs.py).
c.GenerateAssignment.preprocessors = ["autograde.labs.RefuseStrayArtifacts",
                                      *GenerateAssignment.class_traits()["preprocessors"].default()]

# Late work loses 10% of its score per started day (autograde/late.py).
c.AssignLatePenalties.plugin_class = "autograde.late.PercentPerDay"

# Collected submissions carry the student id they were submitted under, not a Unix account of theirs.
# (The option lives on the exchange's collector; nbgrader's own warning calls it CollectApp.check_owner.)
# The kit's collector checks instead, where it can: a record made in the name of a Unix user of this machine
# by another is refused, and links in a submission are left out, never followed (autograde/exchange.py).
c.ExchangeCollect.check_owner = False
c.ExchangeFactory.collect = "autograde.exchange.TrustedCollect"

# Feedback is a web page each student opens: what students wrote (markdown answers, cell outputs) is cleaned
# of scripts and active HTML before it is rendered (nbconvert's SanitizeHTML, with bleach).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbconvert.preprocessors.sanitize.SanitizeHTML",
]

# LMS uploads (the zips `python -m lib.submit <assignment>` writes, autograde/lms.py): put the downloaded zips in
# grading/downloaded/<assignment>/archive/ and run `nbgrader zip_collect <assignment>`. The student id is the
# archive's name up to its first "_", as Canvas names downloads (<login>_<ids>_<file>.zip); for another LMS, set
# this pattern, or rename the zips <student>_<assignment>.zip. Each zip holds <assignment>/<files>.
c.ZipCollectApp.downloaded_directory = "grading/downloaded"
c.ZipCollectApp.extractor_plugin = "autograde.lms.ReadableZipsExtractor"
# The pattern matches a path with one "extracted" folder only: a zip holding a folder of that name would
# otherwise put its files in another student's submission. A student id starts with a letter or digit ("..").
c.FileNameCollectorPlugin.named_regexp = (r"^(?!.*/extracted/.*/extracted/).*/extracted/"
                                          r"(?P<student_id>[A-Za-z0-9][^/_]*)_[^/]*/[^/]+/(?P<file_id>.+)")
c.FileNameCollectorPlugin.valid_ext = list(submit.SUFFIXES)
