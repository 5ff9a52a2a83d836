"""`make serve-replicas`: several Voilà servers on this machine behind nginx, one port.

Each replica is the very server `make serve` runs (`python -m homevalue.dashboards`) on its
own loopback port; nginx (Debian's, run as an ordinary process from a run folder) listens on
the public port and sends each viewer to one replica always (the `hv_route` cookie, see
deploy/nginx/snippets/homevalue-dashboards-http.conf), because a page's kernel and its
websocket live in the server that rendered the page. Ctrl-C (or SIGTERM) stops nginx first,
then the replicas, which shut their kernels down.

The run folder holds nginx.conf, nginx.pid, the proxy's logs and one log per replica
(replica-1.log ...). A replica that dies is reported and routed around; nginx dying stops
everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from homevalue import config

NGINX_DIR = config.PROJ_ROOT / "deploy" / "nginx"
TEMPLATE = NGINX_DIR / "replicas.conf.template"
SNIPPETS = NGINX_DIR / "snippets"
START_TIMEOUT = 180.0  # s for every replica to answer (kernels preheat meanwhile)
STOP_TIMEOUT = 20.0  # s for a replica to shut its kernels down before it is killed


@dataclass
class Replica:
    number: int
    port: int
    process: subprocess.Popen
    log_path: Path


def replica_ports(port: int, count: int, given: str = "") -> list[int]:
    """The replicas' ports: `given` (comma-separated), else the `count` ports after `port`."""
    if count < 1:
        raise SystemExit(f"REPLICAS={count}: at least one replica is needed")
    if not given.strip():
        return [port + i for i in range(1, count + 1)]
    try:
        ports = [int(p) for p in given.split(",") if p.strip()]
    except ValueError:
        raise SystemExit(
            f"REPLICA_PORTS={given!r}: give port numbers separated by commas"
        ) from None
    if len(ports) != count or len(set(ports)) != count or port in ports:
        raise SystemExit(
            f"REPLICA_PORTS={given!r}: give {count} different ports, none of them PORT={port}"
        )
    return ports


def nginx_config(template: str, *, listen: str, ports: Sequence[int], run_dir: Path) -> str:
    """The template with its run folder, snippets, listening address and replicas filled in."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in ports
    )
    filled = (
        template.replace("@RUN_DIR@", str(run_dir))
        .replace("@SNIPPETS@", str(SNIPPETS))
        .replace("@LISTEN@", listen)
        .replace("@SERVERS@", servers)
    )
    if "@" in "".join(line.split("#")[0] for line in filled.splitlines()):
        raise ValueError(f"{TEMPLATE} has a placeholder this launcher does not know")
    return filled


def replica_environment(count: int, environ: dict[str, str]) -> dict[str, str]:
    """The replicas' environment: nginx on 127.0.0.1 is a trusted proxy (so each viewer keeps
    their own page budget), and unless HOMEVALUE_MAX_KERNELS is set, the machine's kernel
    budget, and the memory their preheated pools may take, are shared out between the
    replicas instead of each one claiming all of it."""
    env = dict(environ)
    proxies = [p.strip() for p in env.get("HOMEVALUE_TRUSTED_PROXIES", "").split(",")]
    env["HOMEVALUE_TRUSTED_PROXIES"] = ",".join(p for p in [*proxies, "127.0.0.1"] if p)
    if not env.get("HOMEVALUE_MAX_KERNELS"):
        env["HOMEVALUE_MAX_KERNELS"] = str(max(4, config.default_max_kernels() // count))
    if not env.get("HOMEVALUE_POOL_MEMORY_SHARE"):
        env["HOMEVALUE_POOL_MEMORY_SHARE"] = str(config.POOL_MEMORY_SHARE / count)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # make's jobserver is not theirs
        env.pop(name, None)
    return env


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx-light (Debian)")
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def answers(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_replica(
    number: int, port: int, run_dir: Path, notebooks: str, voila_args: str, env: dict
) -> Replica:
    """`make serve`'s command on `port`, in its own session: Ctrl-C reaches the launcher,
    which stops the replicas in order."""
    log_path = run_dir / f"replica-{number}.log"
    command = [
        sys.executable,
        "-m",
        "homevalue.dashboards",
        "--no-browser",
        f"--port={port}",
        "--Voila.port_retries=0",
        *shlex.split(voila_args),
        notebooks,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=config.PROJ_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return Replica(number, port, process, log_path)


def check_nginx_config(nginx: str, run_dir: Path) -> None:
    conf = run_dir / "nginx.conf"
    checked = subprocess.run(
        [nginx, "-t", "-q", "-p", str(run_dir), "-c", str(conf)], capture_output=True, text=True
    )
    if checked.returncode != 0:
        raise SystemExit(f"nginx refused {conf}:\n{checked.stderr}")


def start_nginx(nginx: str, run_dir: Path) -> subprocess.Popen:
    with (run_dir / "nginx.stderr").open("wb") as log:
        return subprocess.Popen(
            [nginx, "-p", str(run_dir), "-c", str(run_dir / "nginx.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def interrupt(*_) -> None:
    """SIGTERM stops everything as Ctrl-C does."""
    raise KeyboardInterrupt


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)


def wait_all(processes: Sequence[subprocess.Popen], timeout: float) -> None:
    """Wait for every process; kill (with its session) whatever is still there after it."""
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def shut_down(nginx: subprocess.Popen | None, replicas: Sequence[Replica]) -> None:
    """nginx first (no new requests), then the replicas (each shuts its kernels down)."""
    if nginx is not None:
        stop(nginx)  # fast: a graceful stop would wait for every open websocket
        wait_all([nginx], 5)
    for replica in replicas:
        stop(replica.process)
    wait_all([r.process for r in replicas], STOP_TIMEOUT)


def wait_until_up(replicas: Sequence[Replica], proxy_port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(replicas)
    while waiting:
        for replica in list(waiting):
            if replica.process.poll() is not None:
                raise SystemExit(
                    f"replica {replica.number} (port {replica.port}) exited with status "
                    f"{replica.process.returncode}; see {replica.log_path}"
                )
            if answers(replica.port):
                waiting.remove(replica)
        if time.monotonic() > deadline:
            raise SystemExit(f"replicas {[r.number for r in waiting]} did not start in time")
        time.sleep(0.2)
    while not answers(proxy_port):
        if time.monotonic() > deadline:
            raise SystemExit(f"nginx does not listen on port {proxy_port}")
        time.sleep(0.1)


def watch(nginx: subprocess.Popen, replicas: Sequence[Replica]) -> int:
    """Until nginx exits: report each replica that dies (nginx routes around it)."""
    gone: set[int] = set()
    while nginx.poll() is None:
        for replica in replicas:
            if replica.number not in gone and replica.process.poll() is not None:
                gone.add(replica.number)
                print(
                    f"replica {replica.number} (port {replica.port}) exited with status "
                    f"{replica.process.returncode}; new viewers go to the others. Its log: "
                    f"{replica.log_path}",
                    file=sys.stderr,
                    flush=True,
                )
        time.sleep(0.5)
    print(f"nginx exited with status {nginx.returncode}; stopping.", file=sys.stderr)
    return 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make serve-replicas", description=__doc__)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--port", type=int, default=8866, help="the proxy's port")
    parser.add_argument("--host", default="127.0.0.1", help="the proxy's address")
    parser.add_argument("--replica-ports", default="", help="comma-separated; default PORT+1..")
    parser.add_argument("--run-dir", default="", help="default: a new folder in $TMPDIR")
    parser.add_argument("--notebooks", default="notebooks")
    parser.add_argument("--voila-args", default="", help="as `make serve VOILA_ARGS=...`")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not TEMPLATE.is_file():  # an installed wheel has no deploy/ folder
        raise SystemExit(
            f"serving replicas needs nginx's configuration from a checkout of homevalue "
            f"({TEMPLATE} is missing): run `make serve-replicas` in the checkout"
        )
    ports = replica_ports(args.port, args.replicas, args.replica_ports)
    busy = [p for p in [args.port, *ports] if not port_is_free(p)]
    if busy:
        raise SystemExit(f"ports {busy} are in use: choose PORT=... or REPLICA_PORTS=...")
    nginx = nginx_binary()
    if args.run_dir:
        run_dir = Path(args.run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix=f"homevalue-replicas-{args.port}-"))
    listen = f"{args.host}:{args.port}"
    conf = nginx_config(TEMPLATE.read_text(), listen=listen, ports=ports, run_dir=run_dir)
    (run_dir / "nginx.conf").write_text(conf)

    env = replica_environment(args.replicas, dict(os.environ))
    replicas: list[Replica] = []
    proxy: subprocess.Popen | None = None
    check_nginx_config(nginx, run_dir)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        for number, port in enumerate(ports, start=1):
            replicas.append(
                start_replica(number, port, run_dir, args.notebooks, args.voila_args, env)
            )
        proxy = start_nginx(nginx, run_dir)
        wait_until_up(replicas, args.port)
        print(
            f"Serving {args.notebooks}/ on http://{listen}/ through nginx: {args.replicas} "
            f"Voilà servers on ports {', '.join(map(str, ports))}. Config, pid and logs in "
            f"{run_dir}. Ctrl-C stops them all.",
            flush=True,
        )
        return watch(proxy, replicas)
    except KeyboardInterrupt:
        print("Stopping nginx and the replicas...", flush=True)
        return 0
    finally:
        shut_down(proxy, replicas)


if __name__ == "__main__":
    sys.exit(main())
