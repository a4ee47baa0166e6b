# Attack 1: replace the hidden check with a no-op, in its module and in sys.modules. Where the checks cannot
# be imported, plant a fake module under their name so that the hidden test's import finds it.
import sys
import types


def _rt_pass(*args, **kwargs):
    return None


try:
    import autograde.checks.kd as _rt_checks
    print("redteam: the checks module is importable")
except Exception as error:
    print(f"redteam: the checks are not importable ({type(error).__name__}): planting a fake module")
    for _rt_name in ("autograde", "autograde.checks", "autograde.checks.kd"):
        sys.modules[_rt_name] = types.ModuleType(_rt_name)
    sys.modules["autograde"].checks = sys.modules["autograde.checks"]
    sys.modules["autograde.checks"].kd = sys.modules["autograde.checks.kd"]
    _rt_checks = sys.modules["autograde.checks.kd"]
    _rt_checks.check_kd_student = _rt_pass
_rt_checks.check_kd_loss = _rt_pass
sys.modules["autograde.checks.kd"].check_kd_loss = _rt_pass
