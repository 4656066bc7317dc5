"""nginx as a reference proxy, measured in the same rounds as corral.

This machine's speed moves within seconds, and a figure such as the p99 of added time to first
token depends as much on what else runs on corral's core as on corral. So scenarios (a), (b) and
(c) measure nginx too, when it is installed (``apt-get install nginx-light``): one worker process
pinned to corral's core, in front of the same simulator, its access log written to ``/dev/null``
as corral's is, keep-alive connections to the backend and no response buffering (what a
streaming relay needs). Its rows say how far a proxy written in C gets on this machine in this
run; they have no target. ``BENCH_NGINX`` names another nginx binary; without one, the rows say
"not measured".

Example::

    nginx = start_nginx(sim.url, bench.pinning.corral)   # None when nginx is not installed
    runs = alternate(bench, sim, corral, measure, {"nginx": nginx})
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from bench.procs import REFERENCE, Service, ServiceFailed, free_port, launch
from bench.report import Compare, Row
from bench.rounds import Bench, Run, Runs, compare, corral_only

Figure = Callable[[Run], float | None]
NOT_INSTALLED = "nginx is not installed; apt-get install nginx-light"
# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])

CONFIG = """\
worker_processes 1;
master_process off;
daemon off;
pid {root}/nginx.pid;
error_log stderr warn;
worker_rlimit_nofile 8192;
events {{
    worker_connections 4096;
}}
http {{
    access_log /dev/null;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream backend {{
        server {backend};
        keepalive 1024;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def nginx_path() -> str | None:
    """The nginx binary to measure: ``BENCH_NGINX``, else ``nginx`` on the path (or /usr/sbin)."""
    named = os.environ.get("BENCH_NGINX")
    if named:
        return named if os.access(named, os.X_OK) else None
    return shutil.which("nginx", path=SEARCH_PATH)


def nginx_config(backend_url: str, port: int, root: Path) -> str:
    parts = urlsplit(backend_url)
    backend = f"{parts.hostname}:{parts.port}"
    return CONFIG.format(root=root, backend=backend, port=port)


class Nginx(Service):
    """An nginx this run started; its folder (configuration, pid and temporary files) goes when
    it stops."""

    def __init__(self, launched: Service, root: Path) -> None:
        super().__init__(launched.name, launched.process, launched.port, launched.log)
        self.root = root

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_nginx(backend_url: str, cpus: frozenset[int] | None) -> Service | None:
    """nginx in front of ``backend_url``, ready once a request through it reaches the backend;
    None when there is no nginx to run."""
    binary = nginx_path()
    if binary is None:
        return None
    root = Path(tempfile.mkdtemp(prefix="corral-bench-nginx-"))
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(nginx_config(backend_url, port, root))
    launched = launch(REFERENCE, [binary, "-p", str(root), "-c", str(conf)], port, cpus)
    service = Nginx(launched, root)
    service.wait_ready("/api/version")
    return service


@contextmanager
def reference_proxy(bench: Bench, sim: Service) -> Iterator[tuple[dict[str, Service], str | None]]:
    """nginx in front of ``sim`` when the profile measures a reference, by its label in the
    rounds; or why it cannot run here (None when it runs, or when the profile leaves it out)."""
    if not bench.profile.reference:
        yield {}, None
        return
    try:
        service = start_nginx(sim.url, bench.pinning.corral)
    except ServiceFailed as err:  # a reference that fails is left out, not corral's figures
        lines = str(err).strip().splitlines()  # what happened, then the end of nginx's output
        said = f": {lines[-1].strip()}" if len(lines) > 1 else ""
        yield {}, f"{lines[0].rstrip(':')}{said}"
        return
    if service is None:
        yield {}, NOT_INSTALLED
        return
    try:
        yield {REFERENCE: service}, None
    finally:
        service.stop()


def reference_rows(
    bench: Bench, runs: Runs, reason: str | None, rows: list[tuple[str, Figure, Compare, str]]
) -> list[Row]:
    """nginx's rows, each ``(metric, figure, kind, unit)``: compared with direct in the same
    rounds (``ratio`` or ``added``), or nginx's own figure (``absolute``). Rows that say why
    they are not measured when nginx is missing; none when the profile leaves it out."""
    if not bench.profile.reference:
        return []
    if reason is not None:
        return [
            Row(metric, unit, None, None, kind, unmeasured=reason) for metric, _, kind, unit in rows
        ]
    built = []
    for metric, read, kind, unit in rows:
        if kind == "absolute":
            built.append(corral_only(runs, read, metric, unit, label=REFERENCE))
        else:
            built.append(compare(runs, read, kind, metric, unit, "reference", subject=REFERENCE))
    return built
