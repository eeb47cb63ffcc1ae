"""`leaksweep dashboard`: the sweep's study in optuna-dashboard, and the equivalent command line.

Owns what optuna-dashboard is pointed at (`storage_target`: the journal file's path or the RDB URL),
hiding a storage password in anything printed (`mask_password`), and serving the dashboard's WSGI
app on the storage object the workers open (through study.storage).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

from leaksweep.config import SweepConfig
from leaksweep.errors import UserError
from leaksweep.study import storage
from leaksweep.study.prepare import load_sweep_dir


def storage_target(cfg: SweepConfig, sweep_dir: Path) -> str:
    """What `optuna-dashboard` takes on its command line: the journal file's path or the RDB URL."""
    journal = storage.journal_path(cfg.search.storage, sweep_dir)
    return str(journal.resolve()) if journal is not None else cfg.search.storage


mask_password = storage.mask_password  # postgresql://user:SECRET@host/db -> postgresql://user:***@host/db


def dashboard_command(sweep_dir: Path, host: str, port: int) -> str:
    """The equivalent `optuna-dashboard` command line (a storage password is shown as ***)."""
    sweep_dir = Path(sweep_dir)
    target = mask_password(storage_target(load_sweep_dir(sweep_dir), sweep_dir))
    return f"optuna-dashboard {shlex.quote(target)} --host {host} --port {port}"


def _server(host: str, port: int, app):
    """A threaded wsgiref server bound to host:port (port 0: a free one), without an access log."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # the page polls; a hung request must not block Ctrl-C
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the page polls every few seconds: no access log
            pass

    try:
        return make_server(host, port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror}); "
            "pick another port (--port 0 picks a free one)"
        ) from exc


def serve_dashboard(
    sweep_dir: Path, host: str = "127.0.0.1", port: int = 8080, ready: Callable[[str, str], None] | None = None
) -> None:
    """Serve the sweep's study in optuna-dashboard until interrupted (Ctrl-C).

    Uses optuna-dashboard's WSGI app on our storage object (a journal file is opened the same way
    the workers open it) behind a threaded wsgiref server, so the bound port is known before
    serving (`port=0` picks a free one); `ready(url, command)` gets the study's page and the
    equivalent `optuna-dashboard` command line. The dashboard has no login and can change the
    study (notes, tell, delete): bind a loopback address unless the network is trusted.
    """
    import socket

    import optuna_dashboard

    sweep_dir = Path(sweep_dir)
    cfg = load_sweep_dir(sweep_dir)
    study = storage.load_study(sweep_dir, cfg)  # says "run leaksweep sweep first" when there is no study yet
    opened, study_id = storage.storage_and_id(study, cfg.name)
    server = _server(host, port, optuna_dashboard.wsgi(opened))
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    try:
        if ready is not None:
            ready(
                f"http://{shown}:{server.server_port}/dashboard/studies/{study_id}",
                dashboard_command(sweep_dir, host, server.server_port),
            )
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
