#!/usr/bin/env python3
"""Drive Strongroom's model gateway with a vendor's own Python SDK, used as documented.

Run with the test venv's interpreter (see tests/model/setup.sh, which pins the SDKs):

    target/test-venv/bin/python tests/gateway/sdk_check.py --vendor openai \
        --base-url https://127.0.0.1:PORT/v1 --key sr_... --ca DATA/tls/cert.pem \
        --model extractive --question "Where does the pilot board?"

For Anthropic the base URL is the server's root (the SDK appends /v1/...).

The client speaks TLS with the server's certificate (--ca) as its only trusted root, makes
no retries (max_retries=0) and waits at most 30 s for any request. The scenarios run in
this order, each on its own so that one failure does not hide the others:

    models         ids from client.models.list() (every page)
    answer         a plain completion of --question with --model; also id, usage, finish
    streamed       the same question streamed; also stream_chunks, stream_usage, stream_finish
    bad_key        the exception class (and *_status) for the same call with a wrong key
    unknown_model  the same for the model "no-such-model" (and *_message: the error's text)
    bad_request    the same for an empty list of messages

With --rate-limit one more scenario follows them; --only-rate-limit runs it alone (for a
token whose rate limit allows a single call, which the scenarios above would use up):

    rate_limit     the plain completion twice, back to back: rate_first is "ok" or the
                   exception class of the first (then also rate_first_message); rate_second
                   the class of the second, with rate_status, rate_retry_after (the error
                   response's Retry-After header as an int; its text when not a whole number,
                   null when absent) and rate_message

Exactly one JSON object is written to stdout; anything else (warnings included) goes to
stderr. A scenario that fails unexpectedly has the value {"error": "Class: message"}. The
exit status is 0 whatever the scenarios did, and 2 for bad arguments.
"""

import argparse
import itertools
import json
import os
import ssl
import sys

SYSTEM = "Answer briefly."
MAX_TOKENS = 300
TIMEOUT_S = 30
WRONG_KEY = "sr_wrong_key"
UNKNOWN_MODEL = "no-such-model"
# More ids than any gateway lists: a list that never ends is reported, not followed forever.
MAX_MODELS = 1000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--vendor", required=True, choices=["openai", "anthropic"])
    p.add_argument("--base-url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True, help="PEM file: the only trusted root")
    p.add_argument("--model", required=True)
    p.add_argument("--question", required=True)
    p.add_argument(
        "--rate-limit",
        action="store_true",
        help="after the other scenarios, ask twice back to back (the second over the limit)",
    )
    p.add_argument(
        "--only-rate-limit",
        action="store_true",
        help="run the rate-limit scenario alone",
    )
    args = p.parse_args()
    if not os.path.isfile(args.ca):
        p.error(f"--ca {args.ca}: no such file")
    if not args.base_url.startswith("https://"):
        p.error("--base-url must be an https:// URL")
    return args


def failure(e):
    return {"error": f"{type(e).__name__}: {e}"}


def raised(e):
    """What an expected error looked like: its class, status and the server's message."""
    return type(e).__name__, getattr(e, "status_code", None), error_message(e)


def error_message(e):
    """`error.message` of the response body (both vendors nest it so), else the text of e."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        nested = body.get("error")
        for holder in (nested, body):
            if isinstance(holder, dict) and isinstance(holder.get("message"), str):
                return holder["message"]
    return str(e)


def retry_after(e):
    """The error response's Retry-After: an int, its text when not one, None when absent."""
    response = getattr(e, "response", None)
    value = None if response is None else response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return value


def bounded_ids(page):
    """The ids of every model, across pages; an error if the listing does not end."""
    ids = [m.id for m in itertools.islice(page, MAX_MODELS + 1)]
    if len(ids) > MAX_MODELS:
        raise RuntimeError(f"models.list() went past {MAX_MODELS} ids: its pages never end")
    return ids


class OpenAIVendor:
    def __init__(self, args, http):
        import openai

        self.sdk = openai
        self.args = args
        self.http = http

    def client(self, key):
        return self.sdk.OpenAI(
            api_key=key,
            base_url=self.args.base_url,
            max_retries=0,
            timeout=TIMEOUT_S,
            http_client=self.http,
        )

    def messages(self, question):
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
        ]

    def models(self):
        return bounded_ids(self.client(self.args.key).models.list())

    def ask(self, key, model, messages):
        return self.client(key).chat.completions.create(
            model=model, messages=messages, max_tokens=MAX_TOKENS
        )

    def answer(self):
        r = self.ask(self.args.key, self.args.model, self.messages(self.args.question))
        usage = r.usage
        return {
            "answer": r.choices[0].message.content,
            "id": r.id,
            "finish": r.choices[0].finish_reason,
            "usage": None
            if usage is None
            else {"input": usage.prompt_tokens, "output": usage.completion_tokens},
        }

    def streamed(self):
        stream = self.client(self.args.key).chat.completions.create(
            model=self.args.model,
            messages=self.messages(self.args.question),
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage, finish = [], None, None
        with stream:
            for chunk in stream:
                if chunk.choices:
                    choice = chunk.choices[0]
                    if choice.delta is not None and choice.delta.content:
                        pieces.append(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
                if chunk.usage is not None:
                    usage = {
                        "input": chunk.usage.prompt_tokens,
                        "output": chunk.usage.completion_tokens,
                    }
        return {
            "streamed": "".join(pieces),
            "stream_chunks": len(pieces),
            "stream_usage": usage,
            "stream_finish": finish,
        }


class AnthropicVendor:
    def __init__(self, args, http):
        import anthropic

        self.sdk = anthropic
        self.args = args
        self.http = http

    def client(self, key):
        return self.sdk.Anthropic(
            api_key=key,
            base_url=self.args.base_url,
            max_retries=0,
            timeout=TIMEOUT_S,
            http_client=self.http,
        )

    def messages(self, question):
        return [{"role": "user", "content": question}]

    def models(self):
        return bounded_ids(self.client(self.args.key).models.list())

    def ask(self, key, model, messages):
        return self.client(key).messages.create(
            model=model, max_tokens=MAX_TOKENS, system=SYSTEM, messages=messages
        )

    def answer(self):
        r = self.ask(self.args.key, self.args.model, self.messages(self.args.question))
        return {
            "answer": "".join(b.text for b in r.content if b.type == "text"),
            "id": r.id,
            "finish": r.stop_reason,
            "usage": {"input": r.usage.input_tokens, "output": r.usage.output_tokens},
        }

    def streamed(self):
        pieces = []
        with self.client(self.args.key).messages.stream(
            model=self.args.model,
            max_tokens=MAX_TOKENS,
            system=SYSTEM,
            messages=self.messages(self.args.question),
        ) as s:
            for text in s.text_stream:
                if text:
                    pieces.append(text)
            final = s.get_final_message()
        return {
            "streamed": "".join(pieces),
            "stream_chunks": len(pieces),
            "stream_usage": {
                "input": final.usage.input_tokens,
                "output": final.usage.output_tokens,
            },
            "stream_finish": final.stop_reason,
        }


def expect_error(name, call):
    """Runs a call that should fail: {name: class, name_status: status, name_message: text}."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - every failure is a value here
        cls, status, message = raised(e)
        return {name: cls, f"{name}_status": status, f"{name}_message": message}
    return {name: {"error": "no exception: the call succeeded"}}


def rate_limited(ask):
    """Two identical calls back to back: the first within the limit, the second over it."""
    out = {}
    try:
        ask()
        out["rate_first"] = "ok"
    except Exception as e:  # noqa: BLE001 - every failure is a value here
        out["rate_first"] = type(e).__name__
        out["rate_first_message"] = error_message(e)
    try:
        ask()
    except Exception as e:  # noqa: BLE001 - every failure is a value here
        cls, status, message = raised(e)
        out.update(
            rate_second=cls,
            rate_status=status,
            rate_retry_after=retry_after(e),
            rate_message=message,
        )
    else:
        out["rate_second"] = {"error": "no exception: the call succeeded"}
    return out


def run(args):
    out = {}

    def scenario(name, fn):
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - one failed scenario must not hide the others
            out[name] = failure(e)
            return
        if isinstance(value, dict):
            out.update(value)
        else:
            out[name] = value

    # The gateway's certificate is the only root; no proxy or CA bundle from the environment.
    import httpx2

    ctx = ssl.create_default_context(cafile=args.ca)
    http = httpx2.Client(verify=ctx, timeout=TIMEOUT_S, trust_env=False)
    try:
        vendor = (OpenAIVendor if args.vendor == "openai" else AnthropicVendor)(args, http)
        question = vendor.messages(args.question)
        if not args.only_rate_limit:
            scenario("models", vendor.models)
            scenario("answer", vendor.answer)
            scenario("streamed", vendor.streamed)
            scenario(
                "bad_key",
                lambda: expect_error(
                    "bad_key", lambda: vendor.ask(WRONG_KEY, args.model, question)
                ),
            )
            scenario(
                "unknown_model",
                lambda: expect_error(
                    "unknown_model", lambda: vendor.ask(args.key, UNKNOWN_MODEL, question)
                ),
            )
            scenario(
                "bad_request",
                lambda: expect_error(
                    "bad_request", lambda: vendor.ask(args.key, args.model, [])
                ),
            )
        if args.rate_limit or args.only_rate_limit:
            scenario(
                "rate_limit",
                lambda: rate_limited(lambda: vendor.ask(args.key, args.model, question)),
            )
    finally:
        http.close()
    return out


def main():
    args = parse_args()
    # Only the JSON result goes to stdout: anything else printed on the way lands on stderr.
    result_out = sys.stdout
    sys.stdout = sys.stderr
    # The SDKs read credentials, base URLs, extra headers and profiles from the environment;
    # the command line is the whole configuration here.
    for k in list(os.environ):
        if k.startswith(("OPENAI_", "ANTHROPIC_")):
            del os.environ[k]
    try:
        out = run(args)
    except Exception as e:  # noqa: BLE001 - e.g. the SDK or httpx2 is not installed
        out = {"error": f"{type(e).__name__}: {e}"}
    json.dump(out, result_out, sort_keys=True)
    result_out.write("\n")
    result_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
