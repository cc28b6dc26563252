"""psql's tab completion against featuredb: psql runs in a pseudo-terminal,
a partial word and TAB are typed, and the completed line is read back from
the terminal. Prints one line per case; tests/clients.rs compares them with
tab_completion.expected. Completion queries that fail complete nothing, so
a catalog query psql's completion sends that featuredb cannot answer shows
up here as a missing completion."""
import os
import pty
import re
import select
import sys
import time

port = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.environ["PAGER"] = "cat"
    os.environ["TERM"] = "dumb"
    os.execvp("psql", ["psql", "-X", "-h", "127.0.0.1", "-p", port, "-U", "test", "-d", "featuredb"])

buffer = b""


def read_until(pattern, timeout=10.0):
    """Reads terminal output until `pattern` (bytes regex) matches."""
    global buffer
    deadline = time.time() + timeout
    while time.time() < deadline:
        match = re.search(pattern, buffer)
        if match:
            return match
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                buffer += os.read(fd, 4096)
            except OSError:
                break
    return None


read_until(rb"featuredb=# ")
for typed, expected in [
    ("SELECT * FROM ev", "events"),
    ("SELECT * FROM customer_sp", "customer_spend"),
    ("SELECT * FROM featuredb.lin", "featuredb.lineage"),
    ("\\d fraud_m", "fraud_model"),
    ("INSERT INTO eve", "events"),
]:
    buffer = b""
    os.write(fd, typed.encode() + b"\t")
    found = read_until(re.escape(expected.encode()), timeout=5.0)
    print(f"{typed!r} -> {'completed ' + expected if found else 'not completed'}")
    # Clear the line (Ctrl-C) and wait for a fresh prompt.
    buffer = b""
    os.write(fd, b"\x03")
    read_until(rb"featuredb=# ")
os.write(fd, b"\\q\n")
os.waitpid(pid, 0)
