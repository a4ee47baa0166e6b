"""The trusted autograde pipeline, as nbgrader preprocessor names: what `nbgrader autograde` runs in this course
(nbgrader_config.py) and in each scratch course of the cohort runner (autograde.cohort). The classes live in
autograde/referee.py; this module imports nothing, so that reading the course's configuration stays cheap.
"""

AUTOGRADE_PREPROCESSORS = [
    "nbgrader.preprocessors.ClearHiddenTests",     # the kernel never sees a hidden test
    "autograde.referee.SandboxedExecute",
    "autograde.referee.Referee",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
    "autograde.referee.SanitizeMarkdown",           # last: what the TA and the student read, feedback and formgrader
]
