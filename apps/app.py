"""The Gradio app: one tab per domain (``tabs.TABS``), served on this machine only.

    mambakit demo                     # http://127.0.0.1:7860, opens a browser
    mambakit demo --port 0 --no-browser
    python -m mambakit.apps --host 0.0.0.0 --port 8080   # reachable from the local network

Everything runs offline: the models ship inside the package, the page loads no outside
resources (Gradio's bundled fonts), analytics are off, and there is no ``--share`` tunnel.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import socket
import sys
from typing import Optional, Sequence

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"   # before gradio is imported: no telemetry calls

import torch  # noqa: E402

from .limits import SERVER_MAX_FILE_SIZE  # noqa: E402
from .tabs import TABS, tab_modules  # noqa: E402

TITLE = "mambakit demo"
HEADER = ("# mambakit: Mamba state space models, one small model per domain\n"
          "Each tab runs a checkpoint trained by one of mambakit's recipes and shipped inside the package "
          "(all on this machine's CPU, nothing leaves it). Each tab ends with the model's card: what it was "
          "trained on, its measured test score, its size and its speed here.")
CSS = ".model-card {font-size: 0.9em}"


def build_app(tabs: Sequence[str] = TABS, concurrency: int = 2) -> "gradio.Blocks":  # noqa: F821
    """The app as a ``gr.Blocks`` (not launched). ``tabs``: which tabs, in order;
    ``concurrency``: requests handled at once per event (the rest wait in the queue)."""
    import gradio as gr

    modules = tab_modules(tabs)
    # delete_cache: uploads and outputs older than an hour are removed every 30 minutes
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(HEADER, elem_id="header")
        with gr.Tabs(elem_id="tabs"):
            for module in modules:
                with gr.Tab(module.TITLE, id=module.NAME, elem_id=f"tab-{module.NAME}"):
                    module.build()
    demo.queue(default_concurrency_limit=concurrency, max_size=256)
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def limit_heap_growth(arenas: int = 4, mmap_threshold: int = 1 << 20) -> bool:
    """Keep a long-running server's memory flat (glibc only; process-wide; True if applied).

    Each request builds figures and PNGs of a few MB on one of the server's worker threads.
    By default glibc serves such blocks from per-thread heaps once it has freed a first one
    (its mmap threshold adapts upwards), and a heap with a live block near its top is never
    given back: resident memory creeps up by about a megabyte per plot request. Fixing the
    mmap threshold sends big blocks to ``mmap`` (returned to the system when freed) and a few
    arenas bound the per-thread heaps.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold, m_arena_max = -3, -8                                   # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(libc.mallopt(m_arena_max, arenas))


def launch(demo, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
           block: bool = True, quiet: bool = True) -> str:
    """Serve ``demo`` on ``host:port`` (``port=0``: a free one); returns the local URL. With
    ``block=False`` the server runs in a background thread (``demo.close()`` stops it)."""
    limit_heap_growth()
    port = port or free_port(host)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=False, inbrowser=open_browser,
                            prevent_thread_lock=True, quiet=quiet, ssr_mode=False, show_error=False,
                            max_file_size=SERVER_MAX_FILE_SIZE, footer_links=["api", "settings"], css=CSS,
                            mcp_server=False, pwa=False, run_history=False)
    if block:
        demo.block_thread()
    return url


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mambakit demo", description="Start the mambakit demo app (Gradio), "
                                     "one tab per domain, on checkpoints shipped with the package.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    parser.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                        help="torch CPU threads per request (default: min(4, cores))")
    parser.add_argument("--concurrency", type=int, default=2, help="requests served at once per tab action")
    parser.add_argument("--tabs", default=",".join(TABS), help=f"comma-separated tabs (default {','.join(TABS)})")
    parser.add_argument("--share", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mambakit demo [args]``: build and serve the app until Ctrl-C; the exit status."""
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.share:
        print("error: --share is not available: the demo runs offline on this machine. Use --host 0.0.0.0 "
              "to serve it on your local network.", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535 or args.threads < 1 or args.concurrency < 1:
        print("error: --port must be in [0, 65535], --threads and --concurrency >= 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mambakit.apps").setLevel(logging.INFO)
    try:
        demo = build_app([t.strip() for t in args.tabs.split(",") if t.strip()], args.concurrency)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        url = launch(demo, args.host, args.port, open_browser=not args.no_browser, block=False)
    except OSError as err:
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    print(f"mambakit demo: {url}  (Ctrl-C to stop)", flush=True)
    demo.block_thread()      # returns on Ctrl-C, after closing the server
    return 0
