"""Small asyncio helpers shared by the long-lived components."""

from __future__ import annotations

import asyncio


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
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:
            pass
