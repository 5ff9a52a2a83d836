"""The dashboards' kernel fork server ("zygote"): kernels forked from a warm interpreter.

A page's kernel started cold spends about 1.6 CPU-s (bench) before it runs the notebook:
Python starting, then importing ipykernel, pandas, scikit-learn, LightGBM, ipywidgets,
ipyleaflet and homevalue. The Voilà server keeps one zygote (a child process started by
homevalue.dashboards.forking) that has done those imports once; a new kernel is a fork of
it, which then sets its environment and working directory and runs ipykernel's
IPKernelApp on the connection file as `python -m ipykernel_launcher -f ...` would.

What makes a fork safe here:
- nothing in the zygote runs parallel code, opens a zmq context or an event loop, or
  starts a thread: only imports (`fork_hazards` checks, and the server refuses a zygote
  that reports one). The model is not loaded here: LightGBM parses a model in OpenMP
  threads, and libgomp's thread pool does not survive a fork;
- each kernel is its own session (`setsid`, as jupyter_client starts kernels), so the
  server's interrupt, terminate and kill reach it and its own subprocesses;
- the zygote exits when the server does (the control socket closes, or the server's pidfd
  says so); a forked kernel watches the server's pidfd too, in place of ipykernel's parent
  poller (which compares the parent pid, and a forked kernel's parent is the zygote);
- a forked kernel shows the command line a cold one has (`ps`, the tests and the bench
  find kernels by `ipykernel_launcher` and the connection file in it): the zygote is
  started with room in its argv, which the child rewrites through /proc/self/mem.

Protocol (one SOCK_SEQPACKET socket from the server, one JSON object per message):
  zygote -> server  {"ready": pid, "hazards": [...]}        once the imports are done
  server -> zygote  {"id": n, "python": "...", "args": [...], "env": {...}, "cwd": "..."}
  zygote -> server  {"id": n, "pid": pid} with the kernel's pidfd attached, or
                    {"id": n, "error": "..."}
  zygote -> server  {"exit": pid, "status": code}           when a kernel has exited

Run as `python -m homevalue.dashboards.zygote FD MODULE... -- ROOM` by the server only.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import select
import selectors
import signal
import socket
import sys
import threading
import traceback

MESSAGE_MAX_BYTES = 1 << 20  # a request holds an environment: a few kB
# argv room a forked kernel rewrites into its own command line (python, -m
# ipykernel_launcher, -f and a connection file path take about 200 bytes).
ARGV_ROOM = 1024
KERNEL_MODULE = "ipykernel_launcher"


# --- in the zygote -------------------------------------------------------------------------


def fork_hazards() -> list[str]:
    """What in this process would not survive a fork: OS threads besides this one (a
    thread pool, a poller), a zmq context, an asyncio event loop."""
    found = []
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1:
        found.append(f"{threads} threads (a library started a thread pool at import)")
    zmq = sys.modules.get("zmq")
    if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
        found.append("a zmq context")
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        local = getattr(asyncio.get_event_loop_policy(), "_local", None)
        if getattr(local, "_loop", None) is not None:
            found.append("an asyncio event loop")
    return found


def preload(modules: list[str]) -> None:
    """Import what every kernel imports, as `python -m ipykernel_launcher` would find it
    (without the working directory on sys.path), and keep it out of the garbage
    collector's way: gc.freeze() leaves these objects' pages shared with the kernels."""
    if sys.path and (sys.path[0] in ("", os.getcwd())):
        del sys.path[0]
    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def send(control: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(control, [data], fds)
    else:
        control.send(data)


def serve(control: socket.socket, modules: list[str]) -> None:
    """Fork a kernel for each request until the server goes; report each kernel's exit."""
    server = os.pidfd_open(os.getppid())
    preload(modules)
    app_class = kernel_app_class(server)
    send(control, {"ready": os.getpid(), "hazards": fork_hazards()})
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the pipe
    events = selectors.DefaultSelector()
    events.register(control, selectors.EVENT_READ, "request")
    events.register(wake_read, selectors.EVENT_READ, "child")
    events.register(server, selectors.EVENT_READ, "server")
    inherited = (control, events, wake_read, wake_write, app_class)
    while True:
        for key, _mask in events.select():
            if key.data == "server":
                return
            if key.data == "child":
                os.read(wake_read, 4096)
                reap(control)
                continue
            data = control.recv(MESSAGE_MAX_BYTES)
            if not data:  # the server closed its end: it has gone
                return
            answer_fork(control, json.loads(data), inherited)


def reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        send(control, {"exit": pid, "status": os.waitstatus_to_exitcode(status)})


def answer_fork(control: socket.socket, request: dict, inherited: tuple) -> None:
    try:
        pid = os.fork()
    except OSError as error:
        send(control, {"id": request["id"], "error": f"fork failed: {error}"})
        return
    if pid == 0:
        become_kernel(request, inherited)  # never returns
    pidfd = os.pidfd_open(pid)  # not yet reaped (that happens in this loop): the same process
    try:
        send(control, {"id": request["id"], "pid": pid}, [pidfd])
    finally:
        os.close(pidfd)


# --- in a forked kernel ------------------------------------------------------------------


def become_kernel(request: dict, inherited: tuple) -> None:
    """Turn this fresh fork into the kernel the request describes, run it, and exit."""
    code = 1
    try:
        control, events, wake_read, wake_write, app_class = inherited
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        events.close()
        control.close()
        os.close(wake_read)
        os.close(wake_write)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        args = request["args"]
        set_command_line([request["python"], "-m", KERNEL_MODULE, *args])
        sys.argv = [KERNEL_MODULE, *args]
        reseed()
        run_kernel(app_class, args)
        code = 0
    except SystemExit as leaving:
        code = leaving.code if isinstance(leaving.code, int) else (leaving.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def reseed() -> None:
    """A fork shares its parent's random state: give the kernel its own (`random` reseeds
    itself at fork; numpy's global generator does not)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def set_command_line(argv: list[str]) -> None:
    """Show `argv` as this process's /proc/<pid>/cmdline, within the room the zygote's own
    argv left (the bytes between the kernel's arg_start and arg_end, on its stack)."""
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # stat fields 48 and 49: arg_start, arg_end
    data = b"".join(os.fsencode(part) + b"\0" for part in argv)
    if len(data) + 2 > end - start:
        return  # no room: the zygote's command line stays (is_kernel tools will miss it)
    # The rest stays one argument of spaces, as in the zygote: the area must end in a NUL
    # (else Linux reads it as setproctitle's one string).
    data += b" " * (end - start - len(data) - 1) + b"\0"
    with open("/proc/self/mem", "r+b", buffering=0) as memory:
        memory.seek(start)
        memory.write(data)


def watch_server(server: int) -> None:
    """Exit when the Voilà server has gone, as ipykernel's parent poller would."""

    def wait() -> None:
        select.select([server], [], [])
        os._exit(1)

    threading.Thread(target=wait, name="server-watch", daemon=True).start()


def kernel_app_class(server: int) -> type:
    """ipykernel's IPKernelApp watching the server's pidfd in place of its parent poller
    (made once, in the zygote: a traitlets class takes a while to set up)."""
    from ipykernel import kernelapp

    # The same name, so the kernel's log lines read "[IPKernelApp] ..." as a cold kernel's
    # (what operators and the browser tests filter on).
    class IPKernelApp(kernelapp.IPKernelApp):
        def init_poller(self) -> None:
            watch_server(server)

    return IPKernelApp


def run_kernel(app_class: type, args: list[str]) -> None:
    # IPKernelApp read JPY_PARENT_PID into its default when the zygote imported it: the
    # server's pid (which also keeps the kernel from printing "To connect another client")
    app = app_class.instance(parent_handle=int(os.environ.get("JPY_PARENT_PID") or 0))
    app.initialize(args)
    # ipywidgets registers its comm targets at import, when a kernel is running: it was
    # imported here before there was one.
    widgets = sys.modules.get("ipywidgets")
    if widgets is not None:
        widgets.register_comm_target()
    app.start()


def main(argv: list[str]) -> None:
    fd, rest = int(argv[0]), argv[1:]
    modules = rest[: rest.index("--")] if "--" in rest else rest
    control = socket.socket(fileno=fd)
    try:
        serve(control, modules)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server went while the zygote answered it
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
