"""netron inline: serve a model on 127.0.0.1 and show it in an IFrame.

The server runs as a thread of the kernel on a free port and stops at kernel exit. When
jupyter-server-proxy is installed (as on Binder) the IFrame goes through ``/proxy/PORT/`` of
the notebook server, because the browser cannot reach the kernel's 127.0.0.1 there; set
``AMCT_NB_NETRON=direct`` or ``proxy`` to force one. Without netron the panel says how to get it.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import importlib.util
import io
import logging
import os
import socket
import tempfile
from pathlib import Path

__all__ = ["available", "serve", "url", "iframe_html", "stop_all"]

_servers: dict[str, tuple[str, int]] = {}
_tmp = None


def available() -> bool:
    return importlib.util.find_spec("netron") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_all() -> None:
    """Stop every netron server this kernel started."""
    if not _servers:
        return
    import netron

    for addr in list(_servers.values()):
        try:
            netron.stop(addr)
        except Exception:  # already stopped; nothing else to do at exit
            pass
    _servers.clear()


def serve(model, key: str) -> tuple[str, int]:
    """Serve ``model`` (a path or an onnx.ModelProto, written to a temp file) under ``key``."""
    global _tmp
    import netron

    if key in _servers:
        netron.stop(_servers.pop(key))
    if not isinstance(model, (str, os.PathLike)):
        import onnx

        if _tmp is None:
            _tmp = tempfile.TemporaryDirectory(prefix="amct-nb-netron-")
        path = Path(_tmp.name) / f"{key}.onnx"
        onnx.save(model, str(path))
        model = path
    if not _servers:
        atexit.register(stop_all)
    # netron prints "Serving ..." and, when the root logger has no handler, turns on INFO logging
    # for the whole process (every library's log lines would then land in the notebook)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    logging.getLogger("netron").setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            addr = netron.start(str(model), ("127.0.0.1", _free_port()), browse=False)
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    _servers[key] = tuple(addr)
    return _servers[key]


def url(address: tuple[str, int], mode: str | None = None) -> str:
    mode = (mode or os.environ.get("AMCT_NB_NETRON")
            or ("proxy" if importlib.util.find_spec("jupyter_server_proxy") else "direct"))
    if mode == "proxy":
        return f"/proxy/{address[1]}/"
    return f"http://{address[0]}:{address[1]}/"


def iframe_html(src: str, height: int = 600) -> str:
    return (f'<iframe class="amct-netron" src="{html.escape(src)}" style="width:100%;height:{height}px;'
            f'border:1px solid #ddd"></iframe>'
            f'<div style="font-size:11px">netron at '
            f'<a href="{html.escape(src)}" target="_blank">{html.escape(src)}</a> '
            "(click Accept once if it asks about cookies)</div>")


def fallback_html(path: str | None = None) -> str:
    where = f" The model file is {html.escape(str(path))}." if path else ""
    return ("<div class='amct-netron-missing'>netron is not installed, so the graph cannot be shown inline: "
            "<code>pip install netron</code> (or <code>pip install 'amct-nb[notebook]'</code>) and click again."
            f"{where}</div>")
