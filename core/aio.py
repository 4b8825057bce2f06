"""Small asyncio helpers shared by the long-lived components."""

from __future__ import annotations

import asyncio

RECANCEL_AFTER = 0.5  # s: a task still running this long after cancel() is cancelled again


async def cancel_and_wait(*tasks: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel background tasks and wait until they have finished.

    The tasks' own CancelledError is swallowed; if the caller itself is being cancelled
    meanwhile, that cancellation is re-raised (swallowing it would leave the caller running).
    Other exceptions a task died of are not re-raised here: its done-callback logged them.
    """
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        # Some libraries swallow a cancellation (pymodbus turns it into its own exception,
        # or just finishes the request): ask again until the task is really gone.
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=RECANCEL_AFTER)
            if not done:
                task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            pass


async def finish_within(task: asyncio.Task[None] | None, seconds: float) -> None:
    """Let a task that was asked to finish (its "closing" flag set) end by itself within
    ``seconds`` (a final flush, a last delivery attempt), then cancel it."""
    if task is None:
        return
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        await cancel_and_wait(task)
