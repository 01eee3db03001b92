"""HTTP server for the embedded engine's CometBFT-compatible RPC (URI GET form).

Parameters follow CometBFT's URI conventions: bytes as `0x<hex>`, strings quoted,
e.g. `/abci_query?path="bank/balance"&data=0x72616365...`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from racenet.node.embedded import EmbeddedNode, RpcError

log = logging.getLogger(__name__)

MAX_POST_BYTES = 1 << 20


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        raise RpcError("request body is not JSON", -32700) from e


def _raise(error: RpcError) -> Any:
    raise error


def _bytes_param(value: str) -> bytes:
    """A CometBFT URI bytes argument: `0x<hex>` or a quoted string."""
    if value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError as e:
            raise RpcError(f"invalid hex argument: {e}", -32602) from e
    return value.strip('"').encode()


def _int_param(value: str) -> int:
    try:
        return int(value.strip('"') or 0)
    except ValueError as e:
        raise RpcError(f"invalid integer argument {value!r}", -32602) from e


def dispatch(node: EmbeddedNode, route: str, params: dict[str, str]) -> Any:
    """Call the RPC method named by the URL path with its URI parameters."""
    if route == "/health":
        return {}
    if route == "/status":
        return node.status()
    if route in ("/broadcast_tx_sync", "/broadcast_tx_async"):
        return node.broadcast_tx_sync(_bytes_param(params.get("tx", "")))
    if route == "/tx":
        return node.tx(_bytes_param(params.get("hash", "")))
    if route == "/abci_query":
        path = params.get("path", "").strip('"')
        return node.abci_query(path, _bytes_param(params.get("data", "")), _int_param(params.get("height", "0")))
    if route == "/block":
        return node.block(_int_param(params.get("height", "0")))
    raise RpcError(f"method not found: {route}", -32601)


def dispatch_jsonrpc(node: EmbeddedNode, body: Any) -> Any:
    """A JSON-RPC POST call: CometBFT's JSON encoding (tx as base64, other bytes as hex)."""
    if not isinstance(body, dict) or not isinstance(body.get("params", {}), dict):
        raise RpcError("invalid JSON-RPC request", -32600)
    method, params = str(body.get("method", "")), body.get("params", {})
    if method in ("broadcast_tx_sync", "broadcast_tx_async"):
        try:
            tx = base64.b64decode(str(params.get("tx", "")), validate=True)
        except ValueError as e:
            raise RpcError("tx must be base64", -32602) from e
        return node.broadcast_tx_sync(tx)
    return dispatch(node, "/" + method, {k: str(v) for k, v in params.items()})


def serve_rpc(node: EmbeddedNode, host: str, port: int) -> ThreadingHTTPServer:
    """Start the RPC server on a background thread and return it (call .shutdown() to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            self._answer(lambda: dispatch(node, url.path, params))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_POST_BYTES:
                self._answer(lambda: _raise(RpcError("request too large", -32600)))
                return
            raw = self.rfile.read(length)
            self._answer(lambda: dispatch_jsonrpc(node, _json(raw)))

        def _answer(self, call: Callable[[], Any]) -> None:
            try:
                body: dict[str, Any] = {"jsonrpc": "2.0", "id": -1, "result": call()}
                status = 200
            except RpcError as e:
                error = {"code": e.code, "message": "Internal error", "data": str(e)}
                body = {"jsonrpc": "2.0", "id": -1, "error": error}
                status = 500
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("rpc: the client went away before its answer")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("rpc: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rpc", daemon=True).start()
    return server
