#!/usr/bin/env python3
"""Fake LLM server for Strongroom's integration tests (Python 3.11 standard library only).

Usage: python3 tests/fakemodel/server.py --port 0 [--host 127.0.0.1] [--api-key K] [--verbose]
Binds the given loopback host (port 0 = any free port), prints exactly one line
"READY http://HOST:PORT" to stdout and serves until killed. Logs go to stderr, only with --verbose.

Endpoints
  POST /v1/chat/completions  OpenAI chat completions; "stream": true gives SSE chunks, a usage chunk
                             if stream_options.include_usage, then "data: [DONE]".
  POST /v1/messages          Anthropic messages; needs the anthropic-version header and max_tokens.
                             "stream": true gives message_start, content_block_start, ping,
                             content_block_delta..., content_block_stop, message_delta, message_stop.
  GET  /v1/models            model list (Anthropic shape if an anthropic-version header is sent).
  GET  /_requests            {"count", "by_model", "by_test_key", "last": {"method", "path",
                             "headers" (lowercase names), "body" (parsed JSON, or null and "raw")},
                             "recent": the parsed bodies of the last 20 such requests, oldest first}
                             counting every POST to the two model endpoints, even rejected ones.
  POST /_reset               clears the request log and the flaky-N counters.
With --api-key K: OpenAI requests need "Authorization: Bearer K", Anthropic ones "x-api-key: K";
otherwise 401 in the vendor's error shape. Malformed JSON or missing fields: 400, vendor shape.
Unknown path: 404 JSON. Error statuses use the vendor's error JSON shape.

Normal answer: the first sentence of the lowest-numbered passage (a line starting "[n] ", usually
[1]) in the system prompt or the user messages, followed by " [n]", e.g.
"The pilot boards at the outer buoy. [1]". With no passages: "I found nothing to cite."
Token counts are whitespace-split word counts of all prompt text and of the answer.

Tools: a request offering tools ("tools": a non-empty list) is answered with a call of the
first tool, its arguments {"to": TEXT} where TEXT is the last user message's text (a string
content, or its text blocks), unless the conversation ends in a tool result (OpenAI: a "tool"
message; Anthropic: a user message with tool_result blocks); that is answered in text:
"Tool said: RESULT". OpenAI: message.tool_calls [{"id": "call_...", "type": "function",
"function": {"name", "arguments": JSON text}}], content null, finish_reason "tool_calls".
Anthropic: content [{"type": "text", "text": "Calling NAME."}, {"type": "tool_use", "id":
"toolu_...", "name", "input": {"to": TEXT}}], stop_reason "tool_use". Tool requests are never
streamed here: "stream": true with tools is a 400.

Scenarios, selected by the request's "model" (which is also echoed as "model" in responses):
  echo (or any unknown name)  the normal answer.
  cite-missing                normal answer plus a passage that was not given: "... [1] and also [99]".
  no-cite                     the sentence without any [n].
  slow-first-byte-MS          waits MS milliseconds before sending headers, then answers normally.
  status-500, status-503, status-400 (any status-NNN, 400..599)  that status, vendor error JSON.
  rate-limited-S              429 with "Retry-After: S" and type rate_limit_error.
  flaky-N                     503 for the first N requests per (model, x-test-key header value;
                              absent header = one global bucket), then answers normally.
  bad-json                    plain: 200 application/json with a truncated body (Content-Length
                              matches the truncated bytes). Streamed: one SSE event whose JSON is
                              truncated, then the rest of the stream as normal.
  cut-stream                  streamed: two content deltas, then the connection is closed (no
                              final chunk, no [DONE] / message_stop, no chunked terminator).
                              Plain: Content-Length of the full body, half the body, then close.
  endless-stream              streamed: a content delta every 200 ms until the client disconnects.
                              Plain: 200 headers, then a space of JSON whitespace every 200 ms.
  odd-tool-calls              OpenAI, with tools offered: message.tool_calls is [1, "x"] (not calls).
  huge-usage                  the normal answer, its token counts reported as 2**64 - 1 each.
  stall-body                  streamed: headers and the first content delta; plain: headers and
                              half the body. Then nothing for 1 hour, ending early when the client
                              disconnects or the server shuts down.
"""
import argparse, ipaddress, json, re, select, signal, socket, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
STOP = threading.Event()  # set on shutdown so that sleeping/stalling handlers return promptly
LOCK = threading.Lock()
LOG = {"count": 0, "by_model": {}, "by_test_key": {}, "last": None, "recent": []}
RECENT = 20  # bodies kept in LOG["recent"], oldest first
FLAKY = {}  # (model, x-test-key or None) -> requests seen
MODELS = ["echo", "cite-missing", "no-cite", "bad-json", "cut-stream", "endless-stream", "stall-body"]
PASSAGE = re.compile(r"[ \t]*\[(\d+)\] (.*)")


class Gone(Exception):
    """The client went away or the server is stopping: drop the connection quietly."""


def text_of(content):
    """Text of a message content / system field: a string or a list of {"type":"text","text":...}."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def find_passages(texts):
    """{n: passage text} for lines starting "[n] "; a passage continues until a blank line or the next one."""
    found = {}
    for text in texts:
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = PASSAGE.match(line)
            if not m or int(m[1]) in found:
                continue
            parts = [m[2]]
            for nxt in lines[i + 1:]:
                if not nxt.strip() or PASSAGE.match(nxt):
                    break
                parts.append(nxt)
            found[int(m[1])] = " ".join(" ".join(parts).split())
    return found


def make_answer(model, texts):
    passages = find_passages(texts)
    if not passages:
        return "I found nothing to cite. [99]" if model == "cite-missing" else "I found nothing to cite."
    n = min(passages)
    m = re.match(r"(.+?[.!?])(?=\s|$)", passages[n])
    sentence = m[1] if m else passages[n]
    if model == "no-cite":
        return re.sub(r"\s*\[\d+\]", "", sentence)  # even a bracket inside the passage text
    if model == "cite-missing":
        missing = 99 if 99 not in passages else max(passages) + 1
        return f"{sentence} [{n}] and also [{missing}]"
    return f"{sentence} [{n}]".strip()


def error_type(status, anthropic):
    if anthropic:
        named = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                 503: "overloaded_error", 529: "overloaded_error"}
        return named.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def sse(name, obj):
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding like the real APIs
    server_version = "fakemodel/1"

    def log_message(self, fmt, *args):
        if ARGS.verbose:
            sys.stderr.write("fakemodel: %s %s\n" % (self.address_string(), fmt % args))

    def route(self):
        try:
            self.dispatch(self.command)
        except (Gone, BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = route

    # ---- plumbing -------------------------------------------------------------------------
    def read_body(self):
        # Always consume the body, even for 404s, so the next request on a keep-alive connection parses.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_json(self, status, obj, headers=()):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message, etype=None, code=None, headers=()):
        etype = etype or error_type(status, self.anthropic)
        if self.anthropic:
            body = {"type": "error", "error": {"type": etype, "message": message}}
        else:
            body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
        self.send_json(status, body, headers)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, text):
        data = text.encode() if isinstance(text, str) else text
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def hang_up(self):
        """Close without finishing the response; FIN (not RST) so the client reliably reads what was sent."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stall(self, seconds=3600):
        """Send nothing; poll in short waits so a client disconnect or server shutdown ends it promptly."""
        self.close_connection = True
        end = time.monotonic() + seconds
        while time.monotonic() < end and not STOP.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if readable:
                try:
                    if not self.connection.recv(4096):  # EOF: the client closed its side
                        return
                except OSError:
                    return

    def refused(self):
        """With --api-key, answer 401 (vendor shape) and return True unless the request carries the key."""
        if not ARGS.api_key:
            return False
        if self.anthropic:
            if self.headers.get("x-api-key") != ARGS.api_key:
                return self.error(401, "invalid x-api-key") or True
        elif self.headers.get("Authorization") != f"Bearer {ARGS.api_key}":
            return self.error(401, "Incorrect API key provided.", code="invalid_api_key") or True
        return False

    def record(self, raw, body):
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]}, {v}" if k in headers else v
        last = {"method": self.command, "path": self.path, "headers": headers, "body": body}
        if body is None:
            last["raw"] = raw.decode("utf-8", "replace")
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else "(none)"
        key = self.headers.get("x-test-key", "(none)")
        with LOCK:
            LOG["count"] += 1
            LOG["by_model"][model] = LOG["by_model"].get(model, 0) + 1
            LOG["by_test_key"][key] = LOG["by_test_key"].get(key, 0) + 1
            LOG["last"] = last
            LOG["recent"] = (LOG["recent"] + [body])[-RECENT:]

    # ---- routes ---------------------------------------------------------------------------
    def dispatch(self, method):
        raw = self.read_body()
        path = self.path.split("?", 1)[0]
        self.anthropic = path == "/v1/messages" or (path == "/v1/models" and "anthropic-version" in self.headers)
        if method == "GET" and path == "/_requests":
            with LOCK:
                data = json.dumps(LOG).encode()
            return self.send_json(200, data)
        if method == "POST" and path == "/_reset":
            with LOCK:
                LOG.update(count=0, by_model={}, by_test_key={}, last=None, recent=[])
                FLAKY.clear()
            return self.send_json(200, {"ok": True})
        if method == "GET" and path == "/v1/models":
            return self.models()
        if method == "POST" and path in ("/v1/chat/completions", "/v1/messages"):
            return self.complete(raw)
        self.send_json(404, {"error": {"message": f"no route for {method} {path}", "type": "not_found_error"}})

    def models(self):
        if self.refused():
            return
        if self.anthropic:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in MODELS]
            return self.send_json(200, {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
        data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "fakemodel"} for m in MODELS]
        self.send_json(200, {"object": "list", "data": data})

    def complete(self, raw):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.record(raw, body)
        if self.refused():
            return
        if self.anthropic and "anthropic-version" not in self.headers:
            return self.error(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            return self.error(400, "We could not parse the JSON body of your request.")
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return self.error(400, "model: Field required")
        if not isinstance(messages, list) or not messages:
            return self.error(400, "messages: Field required")
        if self.anthropic and not isinstance(body.get("max_tokens"), int):
            return self.error(400, "max_tokens: Field required")

        if m := re.fullmatch(r"slow-first-byte-(\d+)", model):
            if STOP.wait(int(m[1]) / 1000):
                raise Gone
        if (m := re.fullmatch(r"status-(\d{3})", model)) and 400 <= int(m[1]) <= 599:
            return self.error(int(m[1]), f"Scripted failure ({model}).")
        if m := re.fullmatch(r"rate-limited-(\d+)", model):
            return self.error(429, "Rate limit reached (scripted).", etype="rate_limit_error",
                              code="rate_limit_exceeded", headers=[("Retry-After", m[1])])
        if m := re.fullmatch(r"flaky-(\d+)", model):
            key = (model, self.headers.get("x-test-key"))
            with LOCK:
                seen = FLAKY.get(key, 0)
                FLAKY[key] = seen + 1
            if seen < int(m[1]):
                return self.error(503, f"Scripted flaky failure {seen + 1} of {m[1]}.")

        tools = body.get("tools")
        if isinstance(tools, list) and tools:
            if body.get("stream") is True:
                return self.error(400, "stream: tool calls are not streamed by this fake")
            return self.tool_reply(model, tools, messages)

        texts = [text_of(body.get("system"))] if self.anthropic else []
        texts += [text_of(msg.get("content")) for msg in messages
                  if isinstance(msg, dict) and msg.get("role") != "assistant"]
        text = make_answer(model, texts)
        in_tok = sum(len(t.split()) for t in texts)
        out_tok = len(text.split())
        if model == "huge-usage":
            in_tok = out_tok = 2**64 - 1
        stream = body.get("stream") is True
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        if self.anthropic:
            return self.anthropic_reply(model, text, in_tok, out_tok, stream)
        return self.openai_reply(model, text, in_tok, out_tok, stream, include_usage)

    def tool_reply(self, model, tools, messages):
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        content = last.get("content")
        if self.anthropic:
            results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
                if isinstance(content, list) else []
            if results:
                said = text_of(results[0].get("content"))
                return self.anthropic_reply(model, f"Tool said: {said}", 1, 3, False)
            name = tools[0].get("name")
            asked = text_of(content)
            return self.plain(model, {
                "id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant",
                "model": model, "stop_reason": "tool_use", "stop_sequence": None,
                "content": [{"type": "text", "text": f"Calling {name}."},
                            {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24],
                             "name": name, "input": {"to": asked}}],
                "usage": {"input_tokens": len(asked.split()), "output_tokens": 5}})
        if last.get("role") == "tool":
            return self.openai_reply(model, f"Tool said: {text_of(content)}", 1, 3, False, False)
        if model == "odd-tool-calls":
            return self.plain(model, {
                "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None,
                                                     "tool_calls": [1, "x"]},
                             "logprobs": None, "finish_reason": "tool_calls"}]})
        name = (tools[0].get("function") or {}).get("name")
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        asked = text_of(users[-1].get("content")) if users else ""
        call = {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": name, "arguments": json.dumps({"to": asked})}}
        return self.plain(model, {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24], "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                         "logprobs": None, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": len(asked.split()), "completion_tokens": 5,
                      "total_tokens": len(asked.split()) + 5}})

    def openai_reply(self, model, text, in_tok, out_tok, stream, include_usage):
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        usage = {"prompt_tokens": in_tok, "completion_tokens": out_tok, "total_tokens": in_tok + out_tok}
        if not stream:
            return self.plain(model, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage})

        def chunk(delta, finish=None, use=None, choices=True):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
            if include_usage:  # the real API adds "usage": null to every chunk but the last
                c["usage"] = use
            return "data: " + json.dumps(c) + "\n\n"

        head = [chunk({"role": "assistant", "content": ""})]
        tail = [chunk({}, finish="stop")]
        if include_usage:
            tail.append(chunk(None, use=usage, choices=False))
        tail.append("data: [DONE]\n\n")
        self.stream(model, text, head, lambda piece: chunk({"content": piece}), tail)

    def anthropic_reply(self, model, text, in_tok, out_tok, stream):
        mid = "msg_" + uuid.uuid4().hex[:24]
        message = {"id": mid, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": in_tok, "output_tokens": out_tok}}
        if not stream:
            return self.plain(model, message)
        start = dict(message, content=[], stop_reason=None, usage={"input_tokens": in_tok, "output_tokens": 1})
        head = [sse("message_start", {"type": "message_start", "message": start}),
                sse("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}}),
                sse("ping", {"type": "ping"})]
        tail = [sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
                sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": {"output_tokens": out_tok}}),
                sse("message_stop", {"type": "message_stop"})]
        delta = lambda piece: sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                          "delta": {"type": "text_delta", "text": piece}})
        self.stream(model, text, head, delta, tail)

    # ---- shared delivery, where the transport-level faults live ----------------------------
    def plain(self, model, obj):
        data = json.dumps(obj).encode()
        if model == "bad-json":
            return self.send_json(200, data[: len(data) // 2])
        if model in ("cut-stream", "stall-body"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))  # promises more than is sent
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            return self.hang_up() if model == "cut-stream" else self.stall()
        if model == "endless-stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not STOP.wait(0.2):
                self.chunk(b" ")
            raise Gone
        self.send_json(200, data)

    def stream(self, model, text, head, delta, tail):
        pieces = re.findall(r"\S+\s*", text) or [text]  # word-sized deltas, like real token streams
        self.start_stream()
        for event in head:
            self.chunk(event)
        if model == "endless-stream":
            i = 0
            while not STOP.is_set():  # a write to a closed peer raises BrokenPipe/ConnectionReset
                self.chunk(delta(pieces[i % len(pieces)]))
                i += 1
                STOP.wait(0.2)
            raise Gone
        if model == "stall-body":
            self.chunk(delta(pieces[0]))
            return self.stall()
        if model == "cut-stream":
            for piece in (pieces + [" "])[:2]:
                self.chunk(delta(piece))
            return self.hang_up()
        for i, piece in enumerate(pieces):
            event = delta(piece)
            if model == "bad-json" and i == 0:  # chop the event's JSON short but keep SSE framing
                event = event.rstrip("\n")
                event = event[: len(event) - len(event) // 3] + "\n\n"
            self.chunk(event)
        for event in tail:
            self.chunk(event)
        self.wfile.write(b"0\r\n\r\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if ARGS.verbose:
            super().handle_error(request, client_address)


def main():
    global ARGS
    p = argparse.ArgumentParser(description="Fake OpenAI/Anthropic server for tests.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key")
    p.add_argument("--verbose", action="store_true")
    ARGS = p.parse_args()
    try:
        loopback = ARGS.host == "localhost" or ipaddress.ip_address(ARGS.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        p.error(f"--host must be a loopback address, not {ARGS.host!r}")
    if ":" in ARGS.host:
        Server.address_family = socket.AF_INET6
    srv = Server((ARGS.host, ARGS.port), Handler)
    host, port = srv.server_address[:2]
    print(f"READY http://{f'[{host}]' if ':' in host else host}:{port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        STOP.set()
        srv.server_close()


if __name__ == "__main__":
    main()
