# Probe: who the kernel runs as and which network interfaces it sees, printed for the test to read.
import json
import os
import socket

try:
    _rt_sys_net = sorted(os.listdir("/sys/class/net"))
except OSError:
    _rt_sys_net = None
print("redteam-probe " + json.dumps({"uid": os.getuid(), "euid": os.geteuid(),
                                     "interfaces": sorted(name for _, name in socket.if_nameindex()),
                                     "sys_class_net": _rt_sys_net}))
