"""Wrong-password login loops for bench/fault_drill.py, in a process of their own.

Run apart from the drill so that the flood's client-side CPU does not delay the drill's own
latency samples. Prints ``started`` when the loops begin, then one JSON object of the answers'
status codes after ``seconds``::

    .venv/bin/python bench/_login_flood.py http://127.0.0.1:8000 owner@example.com 10 8
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections import Counter

import httpx


async def flood(api_url: str, email: str, seconds: float, loops: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()

    async def one_loop() -> None:
        async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = await client.post(
                        "/api/v1/auth/login",
                        json={"email": email, "password": "wrong-" + secrets.token_hex(4)},
                    )
                    statuses[response.status_code] += 1
                except httpx.HTTPError:
                    statuses[0] += 1

    print("started", flush=True)
    asyncio.get_running_loop().call_later(seconds, stop.set)
    await asyncio.gather(*(one_loop() for _ in range(loops)))
    return statuses


def main() -> None:
    api_url, email, seconds, loops = sys.argv[1:5]
    statuses = asyncio.run(flood(api_url, email, float(seconds), int(loops)))
    print(json.dumps({str(status): count for status, count in statuses.items()}), flush=True)


if __name__ == "__main__":
    main()
