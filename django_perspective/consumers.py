"""The websocket consumer: one Perspective session per connection.

A frame's path: ``receive`` checks it (``check_request``) and queues it on the engine
thread (``engine.py``), which runs ``session.handle_request``. Perspective answers through
the session callback - on the engine thread, possibly for another connection's request -
so ``_on_response`` hops onto this connection's event loop with ``call_soon_threadsafe``
and one writer task sends the outbox in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import access, backpressure, conf, presence, principals, protocol, proxies, schema
from .engine import Engine, Lane, get_engine
from .guard import Guard, Limits, is_small_read
from .tokens import Grant, InvalidToken, read_token

logger = logging.getLogger("django_perspective.consumers")

# Close codes sent by the consumer (documented in the README).
CLOSE_UNSUPPORTED_DATA = 4003  # a text frame: Perspective speaks binary only (autobahn only sends 1000 or 3000-4999)
CLOSE_FORBIDDEN = 4403  # ``authorize()`` refused the connection
CLOSE_SHUTDOWN = 4012  # the server is shutting down: reconnect (1012 "service restart")
CLOSE_BAD_TOKEN = 4401  # the ?token= is forged, tampered with or expired
CLOSE_IDLE = 4408  # nothing received for PERSPECTIVE["IDLE_TIMEOUT"] seconds
CLOSE_TOO_MANY_CONNECTIONS = 4429  # over PERSPECTIVE["MAX_CONNECTIONS_PER_USER"]
CLOSE_TOO_SLOW = 4008  # the client reads slower than it is sent: over PERSPECTIVE["MAX_OUTBOX_BYTES"]
CLOSE_SIGNED_OUT = 4440  # the connection's user is gone: logged out, deactivated, deleted, password changed

UNKNOWN_CLIENT = "anonymous:unknown"
_unknown_client_warned = False

MAX_SUBSCRIPTIONS = 64  # listing subscriptions per connection whose notifications are filtered
_HOSTED_TABLES = schema.BY_NAME["get_hosted_tables"].number


class PerspectiveConsumer(AsyncWebsocketConsumer):
    """Serves Perspective's binary protocol to ``<perspective-viewer>`` and Python clients.

    Subclasses customise ``authorize`` (who may connect), ``check_request`` (which
    frames reach the engine) and ``process_response`` (what goes back).
    """

    engine: Engine | None = None
    session: Any = None
    _holding: tuple[int, list[bytes]] | None = None
    # Let clients create tables and write, replace or delete the ones they created, as
    # Perspective's own handlers do (for tests and trusted tools; off by default).
    client_tables: bool = False

    def __init__(self, *args: Any, engine: Engine | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if engine is not None:
            self.engine = engine

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # A connection never receives channel-layer messages (fan-out is per process), so a
        # plain receive loop replaces Channels' per-message task and asyncio.wait, and no
        # per-connection channel is created on the layer.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            # Daphne cancels every connection on shutdown without a disconnect event: tell
            # the client to reconnect elsewhere and free the session's views.
            if getattr(self, "_writer", None) is not None and not self._closed:
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": CLOSE_SHUTDOWN})
                await self.disconnect(CLOSE_SHUTDOWN)
            raise

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every message, a hop to the
        # sync thread per frame; frames never touch the ORM here (policy lookups go through
        # database_sync_to_async, which does its own), so skip it for them.
        if message["type"] == "websocket.receive":
            text = message.get("text")  # as websocket_receive, one call fewer per frame
            await self.receive(text, None if text is not None else message.get("bytes"))
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        if not await self.authorize():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self._engine = self.engine or get_engine()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._inline_cells = conf.get("INLINE_READ_CELLS") if conf.get("CONCURRENT_READS") else 0
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._sending = asyncio.Lock()  # held while one reply is vetted and sent: they go in order
        self._replies: list[bytes] | None = None  # replies of a read running on the loop now
        self._outbox_bytes = 0
        self._max_outbox = conf.get("MAX_OUTBOX_BYTES")
        self._too_slow = False
        self._closed = False
        self._max_request = conf.get("MAX_REQUEST_SIZE")
        self._max_response = conf.max_response_size()
        await self.accept()
        refusal = await self._admit()
        if refusal:
            logger.warning("connection refused: close %s", refusal, extra=self.log_context(event="reject", code=refusal))
            await self.close(code=refusal)
            return
        self._gate = backpressure.gate_for(self.base_send)
        # Under ``python -m django_perspective.serve`` (daphne) or ``.uvicorn_ws`` (uvicorn): the
        # server's protocol can send a binary reply directly, without the ASGI send's hops.
        self._send_binary = getattr(backpressure.server_protocol(self.base_send), "send_binary", None)
        self._writer = self._loop.create_task(self._drain())
        # Queued, not awaited: the session opens before any of this connection's requests
        # (the lane keeps order), and a busy engine never delays the handshake. Once the
        # engine has started, a new session opens on the reader thread beside a heavy query.
        context = self.log_context()
        self._lane = Lane(self._engine, label=f"user={context['user']} client={context['client']}")
        self._subscriptions: dict[int, asyncio.Future[frozenset[str]]] = {}  # listing msg_id -> tables it saw
        if self._engine.ready:
            self._lane.read(self._open_session)
        else:
            self._lane.call(self._open_session)
        self._opened = self._last_seen = time.monotonic()
        if conf.get("IDLE_TIMEOUT"):
            self._watchdog = self._loop.create_task(self._watch_idle(conf.get("IDLE_TIMEOUT")))
        self._engine.before_delete.add(self._withdraw)
        self._revalidator = self._loop.create_task(self._revalidate(max(conf.get("POLICY_CACHE_SECONDS"), 0.5)))
        logger.info("connect", extra=self.log_context(event="connect"))

    async def _admit(self) -> int:
        """Read the token and count the connection; return a close code to refuse it."""
        grant = Grant(frozenset(), None)
        token = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("token")
        if token:
            try:
                grant = read_token(token[0])
            except InvalidToken:
                return CLOSE_BAD_TOKEN
            if grant.user_id is not None and not await database_sync_to_async(principals.active_user)(grant.user_id):
                return CLOSE_BAD_TOKEN  # made for a user who is no longer active
        granted = grant.tables
        self._token_user = grant.user_id
        self._session_key = getattr(self.scope.get("session"), "session_key", None)
        self._client_address = proxies.client_address(self.scope)
        self._user_key = self._connection_key()
        limit = 0 if self._user_key == UNKNOWN_CLIENT else conf.get("MAX_CONNECTIONS_PER_USER")
        if not presence.enter(self._user_key, limit):
            return CLOSE_TOO_MANY_CONNECTIONS
        # The user is read at call time: re-validation swaps in a freshly loaded one.
        self.guard = Guard(
            can_read=database_sync_to_async(lambda name: access.can_read(self.scope.get("user"), name, granted)),
            can_update=database_sync_to_async(lambda name: access.can_update(self.scope.get("user"), name)),
            catalog=self._engine.catalog,
            owned=self._engine.views,
            expressions=access.expressions_for,
            on_unreadable=self._revoke,
            limits=Limits(
                max_views=conf.get("MAX_VIEWS"),
                max_view_cells=conf.get("MAX_VIEW_CELLS"),
                max_read_cells=conf.get("MAX_READ_CELLS"),
                max_ports=conf.get("MAX_PORTS"),
                rate=conf.get("RATE_LIMIT"),
                burst=conf.get("RATE_BURST"),
                ttl=access.decision_seconds(),
            ),
            client_tables=self.client_tables,
        )
        return 0

    def _connection_key(self) -> str:
        """What ``MAX_CONNECTIONS_PER_USER`` counts this connection under.

        Anonymous clients whose address is unknown (on a unix socket, or behind a trusted
        proxy that named no usable address) share ``UNKNOWN_CLIENT``, which has no limit:
        one shared count would let a single client lock every such visitor out.
        """
        global _unknown_client_warned
        user = self.scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False):
            return f"user:{user.pk}"
        if self._client_address is not None:
            return f"anonymous:{self._client_address}"
        if not _unknown_client_warned:
            _unknown_client_warned = True
            logger.warning(
                "an anonymous connection has no known client address (a unix socket, or a trusted "
                "proxy that did not say): MAX_CONNECTIONS_PER_USER does not count such connections; "
                "set PERSPECTIVE['TRUSTED_PROXIES'] and the proxy's forwarding header",
                extra=self.log_context(event="unknown_address"),
            )
        return UNKNOWN_CLIENT

    async def _revalidate(self, period: float) -> None:
        """Every ``period``: is the principal still there, and may it still read its views' tables?"""
        await asyncio.sleep(period * random.uniform(0.5, 1.0))  # spread a reconnecting crowd
        while not self._closed:
            try:
                await self._recheck()
            except Exception:  # a database hiccup: keep the connection, try again next period
                logger.exception("re-validation failed", extra=self.log_context(event="error"))
            await asyncio.sleep(period)

    async def _recheck(self) -> None:
        user = self.scope.get("user")
        if self._token_user is not None or getattr(user, "is_authenticated", False):
            fresh = await database_sync_to_async(principals.current)(user, self._session_key, self._token_user)
            if fresh is None:
                await self._signed_out()
                return
            self.scope["user"] = fresh  # permissions are read again, not from the old user's cache
        self.guard.forget()
        for table in self.guard.tables():
            await self.guard.readable(table)  # one no longer readable is revoked: on_unreadable

    async def _signed_out(self) -> None:
        logger.warning(
            "closing (%d): the connection's user is gone",
            CLOSE_SIGNED_OUT,
            extra=self.log_context(event="signed_out", code=CLOSE_SIGNED_OUT),
        )
        await self.close(code=CLOSE_SIGNED_OUT)
        await self.disconnect(CLOSE_SIGNED_OUT)  # free the session now, whatever the client does

    def _revoke(self, table: str) -> None:
        """``table`` became unreadable for this connection: delete its views on it (event loop)."""
        views = self.guard.revoke(table)
        if views:
            logger.info(
                "deleting %d view(s) on %r: no longer readable",
                len(views),
                table,
                extra=self.log_context(event="revoke", entity=table),
            )
            self._lane.call(self._delete_views, views)

    def _withdraw(self, table: str) -> None:
        """Engine thread, just before ``table`` is deleted: delete this connection's views on it now.

        So the table is freed at once (``Engine.delete``).
        """
        views = self.guard.revoke(table)
        if views:
            self._delete_views(views)

    def _delete_views(self, views: list[str]) -> None:
        """Delete ``views`` through this connection's own session; their ids go free (engine thread).

        Perspective aborts the process when a session closes holding a view another session
        deleted, so only the owner deletes. The client asked for none of this: the answers
        are held and dropped. A closed session has taken its views with it already.
        """
        if self.session is None:
            return
        number = schema.BY_NAME["view_delete"].number
        for view_id in views:
            frame = protocol.encode_envelope(0, view_id, number, b"")
            try:
                self._held(schema.decode(frame), frame)
            except Exception:  # the others still go
                logger.exception("could not delete view %r", view_id, extra=self.log_context(event="error"))
            self._engine.catalog.forget_view(view_id)
            self.guard.release(view_id)

    async def _watch_idle(self, timeout: float) -> None:
        while True:
            await asyncio.sleep(max(0.05, self._last_seen + timeout - time.monotonic()))
            if time.monotonic() - self._last_seen >= timeout:
                logger.info("idle timeout", extra=self.log_context(event="idle"))
                await self.close(code=CLOSE_IDLE)
                return

    def log_context(self, **fields: Any) -> dict[str, Any]:
        """Structured fields for log records about this connection (``extra=``)."""
        user = self.scope.get("user")
        client = self.scope.get("client") or ("", 0)
        return {
            "user": getattr(user, "pk", None),
            "client": f"{client[0]}:{client[1]}",
            "path": self.scope.get("path", ""),
            **fields,
        }

    async def authorize(self) -> bool:
        """Return False to refuse the connection (closed with 4403). Allows everyone."""
        return True

    async def check_request(self, request: schema.Request) -> str | None:
        """Return a reason to refuse this decoded request, or None to pass it to the engine.

        The default enforces the table policies (``access.py``) and the engine's limits
        through the ``Guard``; it may normalise ``request.body``. Subclasses add rules and
        call ``super()``.
        """
        return await self.guard.check(request, self._engine.columns)

    async def process_response(self, response: bytes) -> bytes | None:
        """Rewrite or drop (None) a response before it is sent. Runs on the event loop.

        The default removes tables this connection may not read from table listings, and
        drops a listing notification when the tables this connection may read did not change.
        """
        if not _is_kind(response, _HOSTED_TABLES):
            if self._subscriptions and _msg_id(response) in self._subscriptions and not protocol.parse_response(response).kind:
                return await self._listing_changed(response)
            return response
        envelope = protocol.parse_envelope(response)
        body = schema.decode_body(response, envelope.body, schema.HOSTED_TABLES_RESP)
        if not await self.guard.filter_hosted_tables(body):
            return response
        return schema.encode_envelope_body(
            envelope.msg_id, envelope.entity_id, envelope.kind, body, schema.HOSTED_TABLES_RESP
        )

    async def _listing_changed(self, notification: bytes) -> bytes | None:
        """A body-less "the hosted tables changed": passed on only if this connection sees it."""
        msg_id = _msg_id(notification)
        seen = await self._subscriptions[msg_id]
        visible = await self._visible_tables()
        if visible == seen:
            return None
        self._subscriptions[msg_id] = self._loop.create_future()
        self._subscriptions[msg_id].set_result(visible)
        return notification

    async def _visible_tables(self) -> frozenset[str]:
        names = await self._engine.arun(self._engine.table_names)
        return frozenset([name for name in names if await self.guard.readable(name)])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is None:
            await self.close(code=CLOSE_UNSUPPORTED_DATA)
            return
        self._last_seen = time.monotonic()
        if self._max_request and len(bytes_data) > self._max_request:
            self.refuse(
                *schema.ids(bytes_data),
                f"request of {len(bytes_data)} bytes exceeds the limit of {self._max_request}",
            )
            return
        try:
            request = schema.decode(bytes_data)
        except protocol.ProtocolError as exc:
            self.refuse(*schema.ids(bytes_data), f"malformed request: {exc}")
            return
        try:
            reason = await self.check_request(request)
        except Exception:  # fail closed: a broken policy refuses the frame, never drops it
            logger.exception("request check failed", extra=self.log_context(event="error"))
            reason = "the server could not check this request"
        if reason is not None:
            self.refuse(request.msg_id, request.entity_id, reason, request.kind.name)
            return
        if request.reply is not None:
            self._enqueue(request.reply)
            return
        over = self._lane.over_budget()
        if over is not None:
            self.refuse(request.msg_id, request.entity_id, over, request.kind.name)
            return
        if schema.is_read(request):
            if self._is_small(request):
                self._replies = []
                try:
                    answered = self._lane.read_now(self._handle, request)
                finally:
                    replies, self._replies = self._replies, None
                if answered:
                    await self._send_now(replies)
                    return
            self._lane.read(self._handle, request)
        else:
            if (
                request.kind.name == "get_hosted_tables"
                and request.body.get("subscribe")
                and len(self._subscriptions) < MAX_SUBSCRIPTIONS
            ):
                # on_hosted_tables_update: what this connection sees now, to compare with later
                self._subscriptions[request.msg_id] = self._loop.create_task(self._visible_tables())
            self._lane.call(self._handle, request)

    def _is_small(self, request: schema.Request) -> bool:
        """Cheap enough to answer on the event loop (``INLINE_READ_CELLS``)."""
        cells = self._inline_cells
        if not cells:
            return False
        dims = self._engine.catalog.known_dimensions(request.entity_id) if request.kind.scope == "view" else None
        return is_small_read(request, dims, cells)

    def refuse(self, msg_id: int, entity_id: str, reason: str, kind: str = "") -> None:
        """Answer request ``msg_id`` with a Perspective error: the client's call fails with it."""
        logger.warning(
            "refused request %s entity=%r: %s",
            kind or "(undecoded)",
            entity_id,
            reason,
            extra=self.log_context(event="refuse", request_kind=kind, entity=entity_id, reason=reason),
        )
        self._enqueue(protocol.error_response(msg_id, entity_id, reason))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "_writer", None) is None:
            return
        if self._closed:
            return
        self._closed = True
        self._writer.cancel()
        if getattr(self, "_watchdog", None) is not None:
            self._watchdog.cancel()
        self._revalidator.cancel()
        self._engine.before_delete.discard(self._withdraw)
        presence.leave(self._user_key)
        self._lane.call(self._close_session)
        logger.info(
            "disconnect code=%s",
            code,
            extra=self.log_context(
                event="disconnect", code=code, seconds=round(time.monotonic() - self._opened, 3)
            ),
        )

    def _open_session(self) -> None:
        if not self._closed:
            self.session = self._engine.new_session(self._on_response)

    def _close_session(self) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            self._engine.close_session(session)
        self.guard.release_all()  # only now: the engine has deleted the session's views

    def _handle(self, request: schema.Request) -> None:
        """Run one checked request (engine or reader thread): bind, encode, handle, settle."""
        if self.session is None or self._too_slow:  # nobody would read the answer
            return
        kind = request.kind.name
        catalog = self._engine.catalog
        try:
            if request.kind.scope == "view" and kind != "view_delete":
                reason = self.guard.bind(request, catalog.dimensions(request.entity_id))
                if reason is not None:
                    self._on_response(protocol.error_response(request.msg_id, request.entity_id, reason))
                    return
            frame = schema.encode(request)
            if kind == "make_view":
                self._make_view(request, frame)
            elif kind == "make_port":
                self._make_port(request, frame)
            elif kind == "view_delete":
                self._view_delete(request, frame)
            else:
                self.session.handle_request(frame, (request.kind.number, request.entity_id))
                if kind in ("view_expand", "view_collapse", "view_set_depth"):
                    catalog.forget_view(request.entity_id)
                elif kind in ("table_delete", "make_table", "make_join_table"):
                    catalog.forget(request.entity_id)
        except Exception as exc:  # answer the caller rather than leave its call waiting
            logger.exception("perspective failed to handle a request", extra=self.log_context(event="error"))
            self._on_response(protocol.error_response(request.msg_id, request.entity_id, str(exc)))

    def _held(self, request: schema.Request, frame: bytes) -> list[bytes]:
        """Run ``frame`` and return its answers instead of sending them (engine thread)."""
        held: list[bytes] = []
        self._holding = (request.msg_id, held)
        try:
            self.session.handle_request(frame)
        finally:
            self._holding = None
        return held

    def _make_view(self, request: schema.Request, frame: bytes) -> None:
        view_id = request.body["view_id"]
        reason = self.guard.bind_make_view(request)
        if reason is not None:
            self._on_response(protocol.error_response(request.msg_id, request.entity_id, reason))
            return
        answers = self._held(request, frame)
        reason = self.guard.admit_view(view_id, self._engine.catalog.dimensions(view_id))
        if reason:
            # Deleted by its own session: Perspective aborts when another one does it.
            self._held(request, protocol.encode_envelope(request.msg_id, view_id, schema.BY_NAME["view_delete"].number, b""))
            self.guard.release(view_id)
            answers = [protocol.error_response(request.msg_id, request.entity_id, reason)]
        for answer in answers:
            self._on_response(answer)

    def _view_delete(self, request: schema.Request, frame: bytes) -> None:
        # The id is free before the client hears of the delete, so its next make_view may reuse it.
        answers = self._held(request, frame)
        self._engine.catalog.forget_view(request.entity_id)
        self.guard.release(request.entity_id)
        for answer in answers:
            self._on_response(answer)

    def _make_port(self, request: schema.Request, frame: bytes) -> None:
        answers = self._held(request, frame)
        for answer in answers:
            envelope = protocol.parse_envelope(answer)
            if envelope.kind == request.kind.number:
                port = schema.decode_body(answer, envelope.body, schema.MAKE_PORT_RESP).get("port_id", 0)
                self.guard.ports.add(port)
            self._on_response(answer)

    def _on_response(self, response: bytes) -> None:
        # Runs on the engine thread, for this connection or as fan-out from another's update.
        if self._closed:
            return
        holding = self._holding
        if holding is not None and _msg_id(response) == holding[0]:
            holding[1].append(response)
            return
        if threading.get_ident() == self._loop_thread:  # a read answered on the loop itself
            if self._replies is not None:
                self._replies.append(response)
            else:
                self._loop.call_soon(self._enqueue, response)
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, response)
        except RuntimeError:  # the event loop has closed under a dying connection
            pass

    def _enqueue(self, response: bytes) -> None:
        """Queue a response; close the connection when its client cannot keep up."""
        if self._closed or self._too_slow:
            return
        if self._max_outbox and self._outbox_bytes and self._outbox_bytes + len(response) > self._max_outbox:
            logger.warning(
                "closing a connection that cannot keep up (%d): %d bytes waiting",
                CLOSE_TOO_SLOW,
                self._outbox_bytes,
                extra=self.log_context(event="too_slow", code=CLOSE_TOO_SLOW),
            )
            self._too_slow = True
            self._writer.cancel()
            self._outbox, self._outbox_bytes = asyncio.Queue(), 0
            self._loop.create_task(self.close(code=CLOSE_TOO_SLOW))
            return
        self._outbox_bytes += len(response)
        self._outbox.put_nowait(response)

    async def _drain(self) -> None:
        while True:
            response = await self._outbox.get()
            async with self._sending:
                await self._deliver(response)
            self._outbox_bytes -= len(response)

    async def _send_now(self, replies: list[bytes]) -> None:
        """Send the replies of a read answered on the loop itself, skipping the outbox when
        nothing waits in it (the lock keeps them behind a reply being sent)."""
        for response in replies:
            if self._outbox.empty() and not self._sending.locked() and not self._too_slow:
                async with self._sending:
                    await self._deliver(response)
            else:
                self._enqueue(response)

    async def _deliver(self, response: bytes) -> None:
        try:
            response = await self.process_response(response)
        except Exception as exc:  # fail closed, but answer: a dead writer would hang every call
            logger.exception("process_response failed", extra=self.log_context(event="error"))
            response = self._failed(response, exc)
        if response is None:
            return
        if self._max_response and len(response) > self._max_response:
            response = self._too_large(response)
        if self._gate is not None:
            await self._gate.open.wait()  # the client's socket is backed up: hold it here
        if self._send_binary is not None and self._send_binary(response):
            return
        await self.base_send({"type": "websocket.send", "bytes": response})

    def _failed(self, response: bytes, exc: Exception) -> bytes | None:
        """The error that replaces a response ``process_response`` could not vet."""
        try:
            envelope = protocol.parse_response(response)
        except protocol.ProtocolError:
            return None
        return protocol.error_response(
            envelope.msg_id, envelope.entity_id, f"the server could not send this response ({type(exc).__name__})"
        )

    def _too_large(self, response: bytes) -> bytes:
        envelope = protocol.parse_response(response)
        logger.error(
            "dropped a %d-byte response over the %d-byte websocket message limit",
            len(response),
            self._max_response,
        )
        return protocol.error_response(
            envelope.msg_id,
            envelope.entity_id,
            f"response of {len(response)} bytes exceeds the server's websocket message limit "
            f"of {self._max_response} bytes (raise DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE and "
            "daphne's --websocket-max-message-size, or request fewer rows)",
        )


def _msg_id(frame: bytes) -> int:
    """A frame's msg_id: Perspective writes it first, when it is not 0."""
    if frame[:1] != b"\x08":
        return 0
    return protocol.read_varint(frame, 1)[0]


def _is_kind(frame: bytes, number: int) -> bool:
    """Cheaply: is the frame's body field ``number``? (msg_id, entity_id, then the body.)"""
    pos = 0
    try:
        while pos < len(frame):
            tag, pos = protocol.read_varint(frame, pos)
            if tag >> 3 == number:
                return True
            if tag & 7 == 0:
                _, pos = protocol.read_varint(frame, pos)
            elif tag & 7 == 2 and tag >> 3 == protocol.ENTITY_ID:
                length, pos = protocol.read_varint(frame, pos)
                pos += length
            else:
                return False
    except protocol.ProtocolError:
        return False
    return False
