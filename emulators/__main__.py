"""`python -m emulators serve`: all six systems on loopback with the seeded world."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from emulators.server import DEFAULT_PORTS, EmulatorConfig, Emulators


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the emulators, print where they listen, serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve all six emulators until Ctrl-C")
    serve.add_argument("--data-dir", type=Path, default=Path("data/emulators"))
    serve.add_argument("--seed", type=int, default=7)
    serve.add_argument("--skus", type=int, default=2000)
    serve.add_argument("--orders", type=int, default=300, help="open orders per OMS at start")
    serve.add_argument("--rate-scale", type=float, default=1.0, help=">1 shortens limit windows; 0 turns limits off")
    serve.add_argument("--tick", type=float, default=10.0, help="seconds between new orders / warehouse shifts")
    serve.add_argument("--base-port", type=int, default=None, help="ports base+1.. instead of the defaults")
    args = parser.parse_args(argv)
    ports = dict(DEFAULT_PORTS)
    if args.base_port is not None:
        ports = {name: args.base_port + i + 1 for i, name in enumerate(DEFAULT_PORTS)}
    config = EmulatorConfig(
        data_dir=args.data_dir,
        seed=args.seed,
        n_skus=args.skus,
        n_orders=args.orders,
        rate_scale=args.rate_scale,
        ports=ports,
        tick_s=args.tick,
    )
    emulators = Emulators(config).start()
    print(json.dumps(emulators.describe(), indent=2), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    emulators.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
