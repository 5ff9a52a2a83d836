"""Preheated pages follow their notebook: an edited notebook's pool is rebuilt from the new file.

Voilà runs a page's notebook in each preheated kernel as the kernel starts and later hands
out that page as it was: after an analyst saved a change, the pool's kernels (and the
refills already starting) still held the old page, so the first viewers after an edit saw
it, and a restart of the server was the only way out. Here every pool kernel remembers the
state of its notebook file (modification time, size, inode) from when Voilà scheduled it,
which is before it reads the file, so an edit in between makes it look stale, never fresh.
When the file's state is no longer that, the pool drops those kernels (each is shut down as
soon as it has started) and refills from the file as it is now. This is checked before a
page is served, so the next visit after an edit gets the new page, and once a second by
the kernel watchdog, so the pool is warm again by the time most viewers come.

`PoolRefreshKernelManager` is the kernel manager voila.json names: LimitedKernelManager's
limits, and this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from pathlib import Path

from homevalue.dashboards.kernels import LimitedKernelManager

Stamp = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino


def stamp(path: Path) -> Stamp | None:
    """What changes when a file is saved (an editor's save also replaces it); None if gone."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


class PoolRefresh:
    """Kernel manager mixin for Voilà's pools (`_pools`: notebook -> tasks, `root_dir`)."""

    def _after_fill(self) -> None:
        """Voilà's pool class (built on ours) stamps each refill as it schedules it."""
        parent = getattr(super(), "_after_fill", None)  # None: the mixin alone (its tests)
        if parent is not None:
            parent()
        self.note_pool_sources()

    @property
    def _stamps(self) -> weakref.WeakKeyDictionary:
        """Each pool task's notebook state when it was scheduled (forgotten with the task)."""
        stamps = self.__dict__.get("_pool_stamps")
        if stamps is None:
            stamps = self.__dict__["_pool_stamps"] = weakref.WeakKeyDictionary()
        return stamps

    def _notebook_file(self, notebook: str) -> Path:
        return Path(getattr(self, "root_dir", "") or ".") / notebook

    def note_pool_sources(self) -> None:
        """Stamp the pool tasks scheduled since the last call (Voilà's fill_if_needed)."""
        for notebook, pool in getattr(self, "_pools", {}).items():
            new = [task for task in pool if task not in self._stamps]
            if new:
                now = stamp(self._notebook_file(notebook))
                for task in new:
                    self._stamps[task] = now

    def refresh_edited_pools(self, notebook: str | None = None) -> int:
        """Replace the pool kernels of `notebook` (or of every pool) that hold an older page
        than the file's; refill from the file unless it is gone. How many were replaced."""
        pools = getattr(self, "_pools", {})
        names = list(pools) if notebook is None else [n for n in (notebook,) if n in pools]
        replaced = 0
        for name in names:
            pool, now = pools[name], stamp(self._notebook_file(name))
            stale = [task for task in pool if self._stamps.get(task, now) != now]
            if not stale:
                continue
            for task in stale:
                pool.remove(task)
                task.add_done_callback(self._retire)
            replaced += len(stale)
            change = "was removed" if now is None else "changed"
            self.log.info(
                "%s %s: replacing %d preheated kernel(s) that ran the old page",
                name,
                change,
                len(stale),
            )
            if now is not None:
                self.fill_if_needed(delay=0, notebook_name=name)
        return replaced

    def _retire(self, task: asyncio.Task) -> None:
        """Shut down a dropped pool kernel once started (a failed start left none)."""
        if task.cancelled() or task.exception() is not None:
            return
        content = task.result()
        content["task"].cancel()  # the old page, if it is still being built
        asyncio.ensure_future(self._shut_down_retired(content["kernel_id"]))

    async def _shut_down_retired(self, kernel_id: str) -> None:
        self.log.info("shutting kernel %s down: its page's notebook was edited", kernel_id)
        with contextlib.suppress(KeyError, RuntimeError):  # already gone
            await self.shutdown_kernel(kernel_id, now=True)


class PoolRefreshKernelManager(PoolRefresh, LimitedKernelManager):
    """The dashboards' kernel manager (voila.json): the limits, and pools that follow edits."""

    async def watch(self) -> None:
        self.refresh_edited_pools()
        await super().watch()
