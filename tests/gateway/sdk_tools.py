#!/usr/bin/env python3
"""A tool round trip through Strongroom's model gateway with a vendor's own Python SDK.

    target/test-venv/bin/python tests/gateway/sdk_tools.py --vendor openai \
        --base-url https://127.0.0.1:PORT/v1 --key sr_... --ca DATA/tls/cert.pem \
        --model MODEL --question "Send the notes to ..." --result "Sent to ..."

One tool, send_note(to: string), is offered. The scenarios, each on its own:

    plain     one call: finish (finish_reason / stop_reason), calls [{"id", "name", "input"}]
              (OpenAI's arguments parsed as JSON), text (Anthropic's text blocks; OpenAI's
              content, null when none)
    result    the conversation sent back with the call and --result as the tool's answer:
              result_answer, the model's text
    streamed  the first call streamed: stream_finish, stream_calls as for plain (built from
              the SDK's own accumulation of the stream)

Exactly one JSON object goes to stdout. A scenario that fails has {"error": "Class: message"}
in place of its values; the exit status is 0 whatever the scenarios did, 2 for bad arguments.
"""

import argparse
import json
import os
import ssl
import sys

TIMEOUT_S = 30
MAX_TOKENS = 300
DESCRIPTION = "Send a note to someone."
SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}},
    "required": ["to"],
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--vendor", required=True, choices=["openai", "anthropic"])
    p.add_argument("--base-url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--question", required=True)
    p.add_argument("--result", required=True)
    args = p.parse_args()
    if not os.path.isfile(args.ca):
        p.error(f"--ca {args.ca}: no such file")
    return args


def failure(e):
    return {"error": f"{type(e).__name__}: {e}"}


def openai_run(args, http, out):
    import openai

    client = openai.OpenAI(
        api_key=args.key,
        base_url=args.base_url,
        max_retries=0,
        timeout=TIMEOUT_S,
        http_client=http,
    )
    tools = [
        {
            "type": "function",
            "function": {"name": "send_note", "description": DESCRIPTION, "parameters": SCHEMA},
        }
    ]
    asked = [{"role": "user", "content": args.question}]

    def calls_of(tool_calls):
        return [
            {"id": c.id, "name": c.function.name, "input": json.loads(c.function.arguments)}
            for c in tool_calls or []
        ]

    first = None
    try:
        r = client.chat.completions.create(
            model=args.model, messages=asked, tools=tools, max_tokens=MAX_TOKENS
        )
        first = r.choices[0].message
        out["plain"] = {
            "finish": r.choices[0].finish_reason,
            "calls": calls_of(first.tool_calls),
            "text": first.content,
        }
    except Exception as e:  # noqa: BLE001
        out["plain"] = failure(e)
    try:
        call = first.tool_calls[0]
        r = client.chat.completions.create(
            model=args.model,
            messages=asked
            + [
                first.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": args.result},
            ],
            tools=tools,
            max_tokens=MAX_TOKENS,
        )
        out["result"] = {"result_answer": r.choices[0].message.content}
    except Exception as e:  # noqa: BLE001
        out["result"] = failure(e)
    try:
        stream = client.chat.completions.create(
            model=args.model, messages=asked, tools=tools, max_tokens=MAX_TOKENS, stream=True
        )
        calls, finish = {}, None
        with stream:
            for chunk in stream:
                for choice in chunk.choices:
                    for d in choice.delta.tool_calls or []:
                        c = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                        c["id"] = d.id or c["id"]
                        if d.function is not None:
                            c["name"] += d.function.name or ""
                            c["arguments"] += d.function.arguments or ""
                    finish = choice.finish_reason or finish
        out["streamed"] = {
            "stream_finish": finish,
            "stream_calls": [
                {"id": c["id"], "name": c["name"], "input": json.loads(c["arguments"])}
                for _, c in sorted(calls.items())
            ],
        }
    except Exception as e:  # noqa: BLE001
        out["streamed"] = failure(e)


def anthropic_run(args, http, out):
    import anthropic

    client = anthropic.Anthropic(
        api_key=args.key,
        base_url=args.base_url,
        max_retries=0,
        timeout=TIMEOUT_S,
        http_client=http,
    )
    tools = [{"name": "send_note", "description": DESCRIPTION, "input_schema": SCHEMA}]
    asked = [{"role": "user", "content": args.question}]

    def calls_of(content):
        return [
            {"id": b.id, "name": b.name, "input": b.input}
            for b in content
            if b.type == "tool_use"
        ]

    def text_of(content):
        return "".join(b.text for b in content if b.type == "text")

    first = None
    try:
        r = client.messages.create(
            model=args.model, max_tokens=MAX_TOKENS, messages=asked, tools=tools
        )
        first = r
        out["plain"] = {
            "finish": r.stop_reason,
            "calls": calls_of(r.content),
            "text": text_of(r.content),
        }
    except Exception as e:  # noqa: BLE001
        out["plain"] = failure(e)
    try:
        use = calls_of(first.content)[0]
        r = client.messages.create(
            model=args.model,
            max_tokens=MAX_TOKENS,
            tools=tools,
            messages=asked
            + [
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": use["id"], "content": args.result}
                    ],
                },
            ],
        )
        out["result"] = {"result_answer": text_of(r.content)}
    except Exception as e:  # noqa: BLE001
        out["result"] = failure(e)
    try:
        with client.messages.stream(
            model=args.model, max_tokens=MAX_TOKENS, messages=asked, tools=tools
        ) as stream:
            final = stream.get_final_message()
        out["streamed"] = {
            "stream_finish": final.stop_reason,
            "stream_calls": calls_of(final.content),
            "stream_text": text_of(final.content),
        }
    except Exception as e:  # noqa: BLE001
        out["streamed"] = failure(e)


def main():
    args = parse_args()
    out = {}
    try:
        import httpx2

        ctx = ssl.create_default_context(cafile=args.ca)
        http = httpx2.Client(verify=ctx, timeout=TIMEOUT_S, trust_env=False)
        (openai_run if args.vendor == "openai" else anthropic_run)(args, http, out)
    except Exception as e:  # noqa: BLE001 - the SDK or httpx2 is not installed
        out["setup"] = failure(e)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
