# Attack 2: an IPython input transformer that turns every later cell that asserts or checks anything into
# an empty cell, so the grade cells "pass" without running.
def _rt_blank(lines):
    return [] if any("assert" in line or "check" in line for line in lines) else lines


_rt_shell = get_ipython()  # noqa: F821  (IPython's)
_rt_shell.input_transformers_cleanup.append(_rt_blank)
_rt_shell.input_transformers_post.append(_rt_blank)
print("redteam: later test cells will be blanked")
