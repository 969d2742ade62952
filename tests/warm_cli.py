"""A warm `clipsteer` for tests that run many CLI commands from shell scripts (tests/test_tutorial.py).

Each `clipsteer` process spends ~8 s of CPU importing torch and transformers before it does anything, so a
script of a dozen commands is mostly imports. Here one server process imports them once; the `clipsteer`
on the script's PATH is a small client that hands its argv, working directory, environment and stdin /
stdout / stderr to the server, which forks a child that runs `clipsteer.cli.main()` (the console entry
point itself) with them and answers with the child's exit status. The server runs no torch code, so no
thread pool exists when it forks.

    python tests/warm_cli.py serve SOCKET            # the server (started by `warm_clipsteer`)
    python tests/warm_cli.py client SOCKET ARGS...   # what the `clipsteer` shim runs
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PRELOAD = ("torch", "transformers", "clipsteer.cli", "clipsteer.models.backbone", "clipsteer.activations.harvest",
           "clipsteer.sae.commands", "clipsteer.evaluate.commands", "clipsteer.steer.commands",
           "clipsteer.experiments.debias", "clipsteer.report.commands", "matplotlib.pyplot")


def serve(path: str) -> None:
    for module in PRELOAD:
        importlib.import_module(module)
    server = socket.socket(socket.AF_UNIX)
    server.bind(path + ".tmp")
    server.listen()
    os.rename(path + ".tmp", path)  # the socket appears once the imports are done
    while True:
        conn, _ = server.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        size = int.from_bytes(message[:8], "big")
        while len(message) < 8 + size:
            message += conn.recv(1 << 20)
        request = json.loads(message[8:])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            conn.close()
            os._exit(run_child(request, fds))
        for fd in fds:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        conn.sendall(os.waitstatus_to_exitcode(status).to_bytes(4, "big", signed=True))
        conn.close()


def run_child(request: dict, fds: list[int]) -> int:
    """Run the CLI as the client's process would; returns its exit status."""
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["clipsteer", *request["argv"]]
    code = 0
    try:
        from clipsteer.cli import main

        main()
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def client(path: str, argv: list[str]) -> int:
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(path)
        socket.send_fds(conn, [len(payload).to_bytes(8, "big") + payload], [0, 1, 2])
        answer = b""
        while len(answer) < 4:
            chunk = conn.recv(4)
            if not chunk:
                print("warm clipsteer: the server closed the connection", file=sys.stderr)
                return 1
            answer += chunk
    return int.from_bytes(answer, "big", signed=True)


@contextmanager
def warm_clipsteer(bin_dir: Path, env: dict[str, str], timeout: float = 300.0) -> Iterator[None]:
    """Write `bin_dir/clipsteer` (the client) and run the server with `env` until the block ends."""
    path = str(bin_dir / "clipsteer.sock")
    me = shlex.quote(str(Path(__file__).resolve()))
    shim = bin_dir / "clipsteer"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {me} client {shlex.quote(path)} "$@"\n')
    shim.chmod(0o755)
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve", path], env=env)
    try:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the warm clipsteer server did not start (exit status {server.poll()})")
            time.sleep(0.2)
        yield
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(client(sys.argv[2], sys.argv[3:]))
