"""compresslab's grader: reference solutions, hidden checks, mutants, and the nbgrader course drivers.

Instructors and TAs only: the student bundle does not contain this package.
"""
