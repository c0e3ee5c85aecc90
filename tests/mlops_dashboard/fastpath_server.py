"""uvicorn as `procs.Server` runs it (same arguments), with one fault of the fast path, for
test_fastpath.py. `FASTPATH_FAULT` chooses it:

- `renamed`: websockets as an upgrade that renamed `Protocol.expect_continuation_frame` would be
  (the whole module, consistently): the server works, but the direct relay lacks what it reads.
- `raise:<port>`: the direct relay's write raises for the socket whose client port is <port>.

Every direct write is reported on stdout (`direct write to <port>`; `direct write failed for
<port>`), so the test can see which path each socket took.

    python -m tests.mlops_dashboard.fastpath_server mlops_dashboard.asgi:application --port ...
"""

from __future__ import annotations

import importlib.util
import os
import sys


def rename_in_websockets(old: str, new: str) -> None:
    """Load websockets.protocol with `old` renamed to `new` everywhere, before anything imports it."""
    import websockets  # noqa: F401 - the package first: it imports its modules lazily

    spec = importlib.util.find_spec("websockets.protocol")
    source = spec.loader.get_source(spec.name)
    assert old in source, f"websockets.protocol has no {old} to rename"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source.replace(old, new), spec.origin, "exec"), module.__dict__)  # noqa: S102


def trace_direct_writes(fail_port: int | None) -> None:
    from mlops_dashboard.events import fastpath

    write = fastpath.FrameWriter.write

    def traced(self, frame: bytes) -> None:
        port = self.transport.get_extra_info("peername")[1]
        if port == fail_port:
            print(f"direct write failed for {port}", flush=True)
            raise RuntimeError("injected by tests/mlops_dashboard/fastpath_server.py")
        print(f"direct write to {port}", flush=True)
        write(self, frame)

    fastpath.FrameWriter.write = traced


def main() -> None:
    fault = os.environ.get("FASTPATH_FAULT", "")
    if fault == "renamed":
        rename_in_websockets("expect_continuation_frame", "expecting_continuation")
    fail_port = int(fault.partition(":")[2]) if fault.startswith("raise:") else None
    trace_direct_writes(fail_port)

    from uvicorn.main import main as uvicorn_main

    uvicorn_main(args=sys.argv[1:], prog_name="uvicorn")


if __name__ == "__main__":
    main()
