"""`Wakeups`: however many requests the engine's step has news for, the event loop is woken once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from minigpt.serve.replies import Wakeups


class _Handler:
    """What `Wakeups` needs of a `Replies`: its `ready` event."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()


def test_one_wake_up_serves_every_request_with_news() -> None:
    async def scenario() -> tuple[int, list[bool], int]:
        loop = asyncio.get_running_loop()
        scheduled = 0
        schedule = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> Any:
            nonlocal scheduled
            scheduled += 1
            return schedule(callback, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        wakeups = Wakeups(loop)
        handlers = [_Handler() for _ in range(8)]

        def engine_step() -> None:  # one decoding step: a token for every running request
            for handler in handlers:
                wakeups.notify(handler)  # type: ignore[arg-type]

        thread = threading.Thread(target=engine_step)
        thread.start()
        thread.join()
        first = scheduled
        await asyncio.wait_for(asyncio.gather(*(h.ready.wait() for h in handlers)), 5)
        woken = [h.ready.is_set() for h in handlers]
        handlers[0].ready.clear()
        wakeups.notify(handlers[0])  # the wake-up was delivered: the next news needs a new one
        await asyncio.wait_for(handlers[0].ready.wait(), 5)
        return first, woken, scheduled

    first, woken, total = asyncio.run(scenario())
    assert first == 1 and all(woken) and total == 2
