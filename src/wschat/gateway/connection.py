"""One TCP connection to the gateway's port: plain HTTP requests or one WebSocket.

``ClientProtocol`` is the only class that touches sockets. It knows the server it belongs to
only as a ``ConnectionHost``: HTTP requests go to its ``handle_http``; an upgrade becomes a
``WebSocketConnection``, admitted by its ``authorize_connection`` (the handshake itself is
``handshake``'s), its frames driven by websockets' Sans-I/O ``ServerProtocol``, which
enforces API Gateway's frame and message limits (close code 1009) as
``max_size=(message, frame)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any, Protocol, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from wschat.gateway import core, handshake, http

log = logging.getLogger("wschat.gateway")

# Messages from one connection run one at a time, in order; past this many waiting, the gateway
# stops reading that socket until the backlog drains (TCP backpressure on a flooding client).
MAX_PENDING_MESSAGES = 32
# A recipient that lets this much unsent data pile up is closed rather than buffered forever.
MAX_WRITE_BUFFER = 8 * 1024 * 1024
CLOSE_TIMEOUT = 2.0


def text_frame(data: bytes) -> bytes:
    """A server-to-client frame, serialized once and written to any number of connections."""
    return Frame(Opcode.TEXT, data).serialize(mask=False)


def binary_frame(data: bytes) -> bytes:
    return Frame(Opcode.BINARY, data).serialize(mask=False)


def frame_for(data: bytes) -> bytes:
    """API Gateway delivers @connections posts as text when they are UTF-8, binary otherwise."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return binary_frame(data)
    return text_frame(data)


class WebSocketConnection:
    """An accepted WebSocket: its protocol state, its API Gateway identity and its inbox."""

    def __init__(
        self,
        client: ClientProtocol,
        protocol: ServerProtocol,
        info: core.ConnectionInfo,
    ) -> None:
        self.client = client
        self.protocol = protocol
        self.info = info
        self.connection_id = info.connection_id
        self.open = False
        self.last_active = time.monotonic()
        self.opened_at = time.monotonic()
        self.fragments: list[bytes] = []
        self.fragment_opcode: Opcode | None = None
        self.inbox: collections.deque[str | bytes] = collections.deque()
        self.draining = False
        # Set when the gateway closes the connection itself (idle, DELETE, shutdown): what
        # $disconnect reports instead of the client's code.
        self.server_close: tuple[int, str] | None = None

    @property
    def transport(self) -> asyncio.Transport:
        assert self.client.transport is not None
        return self.client.transport

    def write_frame(self, frame: bytes) -> bool:
        """Queue an already serialized frame; False when the connection can take no more."""
        if not self.open or self.protocol.state is not State.OPEN:
            return False
        transport = self.transport
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("closing %s: client is not reading", self.connection_id)
            self.client.abort()
            return False
        transport.write(frame)
        return True

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake from the server side."""
        if self.server_close is None:
            self.server_close = (code, reason)
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(code, reason)
            self.client.flush()
            self.client.abort_later(CLOSE_TIMEOUT)


class ConnectionHost(Protocol):
    """What a client connection needs of the server that accepted it (``Gateway``)."""

    @property
    def limits(self) -> core.Limits: ...

    @property
    def http_request_timeout(self) -> float: ...

    @property
    def port(self) -> int: ...

    @property
    def tls(self) -> bool: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a task of this connection, keeping it referenced until it ends."""

    def client_opened(self, client: ClientProtocol) -> None: ...

    def client_closed(self, client: ClientProtocol) -> None: ...

    async def handle_http(self, request: http.Request, peer: str) -> bytes:
        """The whole response to a plain HTTP request."""

    async def authorize_connection(
        self, ws: WebSocketConnection, request: http.Request
    ) -> tuple[int, dict[str, str]]:
        """``$connect``'s status (non-2xx refuses the handshake) and headers to add."""

    def connection_opened(self, ws: WebSocketConnection) -> None: ...

    def connection_closed(self, ws: WebSocketConnection, code: int, reason: str) -> None: ...

    async def route_message(self, ws: WebSocketConnection, body: str | bytes) -> None:
        """Run the route a message selects; messages of one connection arrive in order."""


class ClientProtocol(asyncio.Protocol):
    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ws: WebSocketConnection | None = None
        self.busy = False  # an HTTP request or a handshake is in progress
        self.peer = "127.0.0.1"
        self._abort_handle: asyncio.TimerHandle | None = None
        # Runs while the connection owes us a whole request (head and body): a client that
        # trickles a head, or holds a kept-alive connection idle, cannot keep a socket forever.
        self._request_timer: asyncio.TimerHandle | None = None

    # --- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, only alike).
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0])
        self.host.client_opened(self)
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._websocket_data(data)
            return
        self.buffer += data
        if not self.busy:
            self._next_http_request()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            self.ws.protocol.receive_eof()
            self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.host.client_closed(self)
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        self._request_arrived()
        ws = self.ws
        if ws is not None and ws.open:
            ws.open = False
            if ws.server_close is not None:
                code, reason = ws.server_close
            elif ws.protocol.close_rcvd is not None:
                code, reason = ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason
            elif ws.protocol.close_sent is not None:
                # The protocol failed the connection (1009 too big, 1007 bad UTF-8, 1002) and
                # closed the socket without waiting for the client's echo.
                code, reason = ws.protocol.close_sent.code, ws.protocol.close_sent.reason
            else:
                code, reason = 1006, ""  # dropped without a close frame
            self.host.connection_closed(ws, code, reason)

    # --- helpers -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def flush(self) -> None:
        """Send what the WebSocket protocol queued; close the socket when it asks to."""
        ws = self.ws
        if ws is None or self.transport is None:
            return
        for data in ws.protocol.data_to_send():
            if data:
                self.write(data)
            else:
                self.close_transport()

    def close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def abort_later(self, delay: float) -> None:
        if self._abort_handle is None:
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(delay, self.abort)

    # --- HTTP --------------------------------------------------------------------------------

    def _await_request(self) -> None:
        self._request_arrived()
        timeout = self.host.http_request_timeout
        self._request_timer = asyncio.get_running_loop().call_later(timeout, self._request_late)

    def _request_arrived(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_late(self) -> None:
        self._request_timer = None
        if self.ws is None and not self.busy:
            log.info("closing a connection from %s: no whole request in time", self.peer)
            self.close_transport()

    def _next_http_request(self) -> None:
        try:
            parsed = http.parse_head(self.buffer)
            if parsed is None:
                return
            request, head_length = parsed
            length = 0 if request.is_websocket_upgrade else http.body_length(request)
        except http.BadRequest as exc:
            # boto3 names the error from x-amzn-ErrorType: a body too large to read is an
            # @connections post over the limit, which API Gateway answers this way.
            headers = {"x-amzn-ErrorType": "PayloadTooLargeException"} if exc.status == 413 else {}
            self.write(
                http.json_response(
                    exc.status, {"message": str(exc)}, headers=headers, keep_alive=False
                )
            )
            self.close_transport()
            return
        if len(self.buffer) < head_length + length:
            return  # wait for the rest of the body
        request.body = bytes(self.buffer[head_length : head_length + length])
        del self.buffer[: head_length + length]
        self.busy = True
        self._request_arrived()
        if request.is_websocket_upgrade:
            self.host.spawn(self._handshake(request))
        else:
            self.host.spawn(self._http(request))

    async def _http(self, request: http.Request) -> None:
        try:
            reply = await self.host.handle_http(request, self.peer)
        except Exception:
            log.exception("HTTP request failed")
            reply = http.json_response(500, {"message": "Internal server error"})
        self.write(reply)
        self.busy = False
        if not request.keep_alive:
            self.close_transport()
            return
        self._await_request()
        if self.buffer:
            self._next_http_request()

    # --- WebSocket ---------------------------------------------------------------------------

    async def _handshake(self, request: http.Request) -> None:
        limits = self.host.limits
        max_size = (limits.max_message_bytes, limits.max_frame_bytes)
        accept = handshake.accept_key(request)
        if accept is None:
            # Not plainly valid: websockets checks it and answers with the error it finds.
            self._refuse_malformed(request, ServerProtocol(max_size=max_size))
            return
        connected_at_ms = int(time.time() * 1000)
        info = core.ConnectionInfo(
            connection_id=core.new_connection_id(),
            source_ip=self.peer,
            connected_at_ms=connected_at_ms,
            headers=core.forwarded_headers(
                request.headers,
                self.peer,
                self.host.port,
                self.host.tls,
                connected_at_ms,
            ),
            query=request.query,
            user_agent=request.header("User-Agent"),
        )
        # The handshake is this module's: websockets' protocol starts at the frames.
        ws = WebSocketConnection(self, ServerProtocol(state=State.OPEN, max_size=max_size), info)
        status, extra_headers = await self.host.authorize_connection(ws, request)
        if self.transport is None or self.transport.is_closing():
            # The client gave up during $connect: API Gateway runs $disconnect only for
            # connections that were established, and so do we.
            return
        if not core.is_success(status):
            self._refuse(status)
            return
        try:
            response = handshake.switching_protocols(accept, http.http_date(), extra_headers)
        except ValueError as exc:  # a header with a line break in it, say
            log.error("%s: %s", ws.connection_id, exc)
            self._refuse(500)
            return
        self.write(response)
        self.ws = ws
        ws.open = True
        self.host.connection_opened(ws)
        if self.buffer:  # frames sent right behind the handshake
            data, self.buffer = bytes(self.buffer), bytearray()
            self._websocket_data(data)

    def _refuse(self, status: int) -> None:
        """Answer a handshake that ``$connect`` (or its authorizer) refused, as API Gateway
        does: the status, and the connection closed."""
        body = f"{status}".encode()
        self.write(http.response(status, body, content_type="text/plain", keep_alive=False))
        self.close_transport()

    def _refuse_malformed(self, request: http.Request, protocol: ServerProtocol) -> None:
        """websockets reads the head ``handshake.accept_key`` would not accept, and answers
        with the status its checks give (a head it cannot even parse gets a 400)."""
        protocol.receive_data(request.head)
        events = protocol.events_received()
        if events and isinstance(events[0], WsRequest):
            response = protocol.accept(events[0])
            if response.status_code != 101:
                protocol.send_response(response)
                for data in protocol.data_to_send():
                    if data:
                        self.write(data)
                self.close_transport()
                return
        self.write(
            http.json_response(400, {"message": "invalid WebSocket handshake"}, keep_alive=False)
        )
        self.close_transport()

    def _websocket_data(self, data: bytes) -> None:
        ws = self.ws
        assert ws is not None
        ws.last_active = time.monotonic()
        ws.protocol.receive_data(data)
        for event in ws.protocol.events_received():
            if isinstance(event, Frame):
                self._frame(ws, event)
        self.flush()

    def _frame(self, ws: WebSocketConnection, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            if frame.fin:
                self._message(ws, opcode, bytes(frame.data))
            else:
                ws.fragment_opcode = opcode
                ws.fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT and ws.fragment_opcode is not None:
            ws.fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(ws.fragments)
                message_opcode = ws.fragment_opcode
                ws.fragments, ws.fragment_opcode = [], None
                self._message(ws, message_opcode, data)

    def _message(self, ws: WebSocketConnection, opcode: Opcode, data: bytes) -> None:
        if not ws.open:
            return
        if opcode is Opcode.TEXT:
            try:
                body: str | bytes = data.decode("utf-8")
            except UnicodeDecodeError:
                ws.protocol.fail(1007, "invalid UTF-8 in a text frame")
                return
        else:
            body = data
        ws.inbox.append(body)
        if len(ws.inbox) >= MAX_PENDING_MESSAGES and self.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
        if not ws.draining:
            ws.draining = True
            self.host.spawn(self._drain(ws))

    async def _drain(self, ws: WebSocketConnection) -> None:
        try:
            while ws.inbox and ws.open:
                body = ws.inbox.popleft()
                if len(ws.inbox) < MAX_PENDING_MESSAGES // 2 and self.transport is not None:
                    with contextlib.suppress(RuntimeError):
                        self.transport.resume_reading()
                await self.host.route_message(ws, body)
        finally:
            ws.draining = False
