"""The FastAPI dependencies every router shares: the process's context and the request's session.

Routes never name the composition root: :func:`app_context` hands out the process's context
untyped, and each domain types it as the Protocol of what it needs (``AppContextDep`` here;
``PlatformContext``, ``NotifyingContext``... in the domains). Who the caller is comes from
:mod:`notiflow.auth.deps`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.queue import JobContext
from notiflow.kit.uow import session_scope


class AppContext(JobContext, Protocol):
    """What the routes of every domain may use: the settings, the database, the queue and
    Redis (when configured)."""

    @property
    def redis(self) -> Redis | None: ...


async def app_context(request: Request) -> Any:
    """The process's context, which satisfies every domain's Protocol."""
    return request.app.state.runtime


AppContextDep = Annotated[AppContext, Depends(app_context)]


async def get_session(context: AppContextDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async for session in session_scope(context.sessionmaker):
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
