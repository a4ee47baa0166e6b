"""compresslab's student-facing library: data loaders, models, training loop, pruning helpers and plots.

Notebooks import what they need, e.g. `from lib import profile, train` or `from lib.models import VGG`.
Nothing here solves a lab's TODO: those are yours to write in the notebooks.
"""
