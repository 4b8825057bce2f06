"""The ground floor: the vocabulary every layer shares (measurements and their quality,
durations, asyncio helpers, log budgets). It imports nothing from the rest of firewarden:
``core`` <- ``drivers`` <- ``rules`` <- ``daemon``; ``simulator`` and ``bench`` sit on top."""
