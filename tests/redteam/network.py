# Attack 8: reach the network: connect to a listener on the grader's loopback and send something.
import socket

try:
    with socket.create_connection(("127.0.0.1", __PORT__), timeout=5) as _rt_conn:
        _rt_conn.sendall(b"redteam-__TOKEN__")
    print("redteam: connected to the loopback listener")
except OSError as error:
    print(f"redteam: no connection ({type(error).__name__})")
