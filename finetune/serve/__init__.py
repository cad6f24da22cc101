"""`ft serve`: a trained model behind an OpenAI-compatible HTTP API (FastAPI + uvicorn, the `serve` extra).

``engine`` loads the model as ``ft generate`` does and decodes a batch of requests at a time; ``batcher``
groups concurrent requests into those batches; ``rows`` keeps each request's own sampling, length and stop
strings inside a batch; ``app`` speaks OpenAI's JSON and server-sent events.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from pathlib import Path
from typing import Iterator

from finetune.errors import UserError

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    model_dir: Path,
    *,
    name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    source: str | None = None,
    max_batch: int = 16,
    window_ms: float = 10.0,
    default_max_tokens: int = 256,
    threads: int = 0,
) -> None:
    """Serve ``model_dir`` until SIGTERM or Ctrl-C; in-flight requests are answered before it returns."""
    _require_extra()
    import uvicorn

    from finetune.serve.app import create_app
    from finetune.serve.engine import load_engine

    sock = bind(host, port)  # before loading: a taken port is said at once
    engine = load_engine(model_dir, name, source, threads)
    app = create_app(engine, max_batch=max_batch, window_s=window_ms / 1000, default_max_tokens=default_max_tokens)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=10))
    bound = sock.getsockname()[1]
    if host not in LOOPBACK:
        log.warning("warning: listening on %s: anyone who reaches this address can use the model (no keys)", host)
    print(f"serving {name} at http://{_url_host(host)}:{bound}/v1 (batches of up to {max_batch})", flush=True)
    with _terminate_quietly():
        server.run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket for ``host:port`` (port 0: a free one), or a one-line error naming the fix."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(
            f"--host {host!r} cannot be resolved ({exc.strerror}); use an address such as 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}); pass a free --port") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _terminate_quietly() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the previous handler;
    a no-op handler meanwhile makes that a clean exit (status 0) instead of death by signal."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UserError(f"ft serve needs {exc.name}: pip install 'ft[serve]'") from None
