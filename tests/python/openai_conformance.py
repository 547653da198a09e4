"""Checks the embedded model server with OpenAI's own Python client (`openai`, over a real socket).

Usage: openai_conformance.py <base_url ending in /v1> <api_key> <reference.json>

The reference file holds sentence-transformers' vectors for fixed sentences (see
minilm_reference.py); every vector served here must match its reference with cosine >= 0.999.
Prints "checks passed" at the end; any failed check raises.
"""

import base64
import math
import struct
import sys

import httpx
import openai

EMBED = "all-MiniLM-L6-v2"
CHAT = "SmolLM2-135M-Instruct"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def expect_error(kind, status, call, code=None):
    try:
        call()
    except kind as error:
        assert error.status_code == status, (error.status_code, error)
        body = error.body if isinstance(error.body, dict) else {}
        assert body.get("message"), f"no message in {error.body!r}"
        if code is not None:
            assert body.get("code") == code, (body, code)
        return
    raise AssertionError(f"expected {kind.__name__} ({status})")


def check_models(client):
    ids = sorted(m.id for m in client.models.list())
    assert ids == sorted([EMBED, CHAT]), ids
    assert client.models.retrieve(CHAT).id == CHAT
    expect_error(openai.NotFoundError, 404, lambda: client.models.retrieve("gpt-4o"))


def check_embeddings(client, reference):
    sentences = reference["sentences"]
    expected = reference["embeddings"]
    # The client asks for base64 by default and decodes it; ask for floats too.
    for fmt in (openai.NOT_GIVEN, "float"):
        response = client.embeddings.create(model=EMBED, input=sentences, encoding_format=fmt)
        assert response.model == EMBED and response.object == "list"
        assert [d.index for d in response.data] == list(range(len(sentences)))
        worst = 1.0
        for item, want in zip(response.data, expected):
            got = item.embedding
            assert len(got) == 384, len(got)
            assert abs(math.sqrt(sum(x * x for x in got)) - 1.0) < 1e-4
            worst = min(worst, cosine(got, want))
        assert worst >= 0.999, f"worst cosine against sentence-transformers: {worst}"
        print(f"embeddings ({fmt if fmt is not openai.NOT_GIVEN else 'base64'}): worst cosine {worst:.6f}")
        usage = response.usage
        assert usage.prompt_tokens == usage.total_tokens > len(sentences)
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=sentences, encoding_format="float")
    body = raw.http_response.json()
    # Inputs over 256 tokens are cut as sentence-transformers cuts them, and the usage says how many.
    assert body["usage"]["truncated_inputs"] >= 1, body["usage"]

    single = client.embeddings.create(model=EMBED, input="This is a test sentence.")
    assert len(single.data) == 1 and single.data[0].index == 0
    assert cosine(single.data[0].embedding, expected[0]) >= 0.999

    bad = [
        ("empty string", {"input": ""}),
        ("empty list", {"input": []}),
        ("blank item", {"input": ["fine", "  "]}),
        ("token ids", {"input": [[101, 2023, 102]]}),
        ("number", {"input": 42}),
        ("too many", {"input": ["x"] * 2049}),
        ("dimensions", {"input": "x", "dimensions": 128}),
    ]
    for name, args in bad:
        expect_error(openai.BadRequestError, 400, lambda a=args: client.embeddings.create(model=EMBED, **a))
        print(f"embeddings refuses {name}")
    expect_error(
        openai.BadRequestError,
        400,
        lambda: client.embeddings.create(model=EMBED, input="x", extra_body={"encoding_format": "int8"}),
    )
    expect_error(openai.NotFoundError, 404, lambda: client.embeddings.create(model="text-embedding-3-small", input="x"))


def ask(client, content, **kwargs):
    return client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": content}], **kwargs
    )


def check_chat(client):
    greedy = dict(temperature=0, max_tokens=40)
    first = ask(client, "Write one sentence about cats.", **greedy)
    text = first.choices[0].message.content
    assert isinstance(text, str) and text.strip(), first
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason in ("stop", "length")
    assert first.id.startswith("chatcmpl-") and first.object == "chat.completion"
    usage = first.usage
    assert 0 < usage.completion_tokens <= 40 and usage.prompt_tokens > 10
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    again = ask(client, "Write one sentence about cats.", **greedy)
    assert again.choices[0].message.content == text, "greedy decoding must repeat itself"
    print(f"chat: {text!r}")

    # Streaming: the same greedy answer, in pieces, then finish_reason, usage and [DONE].
    stream = ask(client, "Write one sentence about cats.", stream=True, stream_options={"include_usage": True}, **greedy)
    pieces, finish, streamed_usage, roles = [], None, None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            streamed_usage = chunk.usage
            assert chunk.choices == []
            continue
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        if delta.content:
            pieces.append(delta.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert roles == ["assistant"], roles
    assert "".join(pieces) == text, ("".join(pieces), text)
    assert len(pieces) > 1, "a streamed answer arrives in more than one piece"
    assert finish == first.choices[0].finish_reason
    assert streamed_usage is not None and streamed_usage.completion_tokens == usage.completion_tokens

    # max_tokens cuts the answer and says so.
    short = ask(client, "Write one sentence about cats.", temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3

    # A stop sequence ends the answer before it, in both modes.
    words = text.split()
    assert len(words) > 4, text
    stop = " " + words[3]
    cut = text[: text.index(stop)]
    stopped = ask(client, "Write one sentence about cats.", stop=[stop], **greedy)
    assert stopped.choices[0].message.content == cut, (stopped.choices[0].message.content, cut)
    assert stopped.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in ask(client, "Write one sentence about cats.", stop=stop, stream=True, **greedy)
        if c.choices
    )
    assert streamed == cut, (streamed, cut)

    # Sampling with a seed repeats; a system message and content parts are accepted.
    seeded = [
        ask(client, "Name a fruit.", temperature=1.0, top_p=0.9, seed=7, max_tokens=12).choices[0].message.content
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1], seeded
    parts = client.chat.completions.create(
        model=CHAT,
        messages=[
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": "What color is the sky?"}]},
        ],
        temperature=0,
        max_tokens=5,
    )
    assert parts.choices[0].message.content.strip()

    def bad(**kwargs):
        body = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        body.update(kwargs)
        return lambda: client.chat.completions.create(**body)

    for name, call in [
        ("no messages", bad(messages=[])),
        ("tool role", bad(messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}])),
        ("image part", bad(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}])),
        ("temperature", bad(temperature=3)),
        ("top_p", bad(top_p=0)),
        ("n", bad(n=2)),
        ("max_tokens", bad(max_tokens=0)),
        ("stop", bad(stop=["a", "b", "c", "d", "e"])),
        ("penalty", bad(frequency_penalty=5)),
        ("wrong type", bad(extra_body={"messages": "hi"})),
    ]:
        expect_error(openai.BadRequestError, 400, call)
        print(f"chat refuses {name}")
    expect_error(
        openai.BadRequestError,
        400,
        bad(messages=[{"role": "user", "content": "word " * 3000}]),
        code="context_length_exceeded",
    )
    expect_error(openai.NotFoundError, 404, lambda: client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]))


def check_raw(base_url, api_key):
    headers = {"authorization": f"Bearer {api_key}"}
    reply = httpx.post(f"{base_url}/embeddings", content=b"{not json", headers={**headers, "content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["type"] == "invalid_request_error"
    reply = httpx.post(f"{base_url}/embeddings", content=b"input=x", headers={**headers, "content-type": "text/plain"})
    assert reply.status_code == 415, reply.status_code
    reply = httpx.post(f"{base_url}/embeddings", content=b"x" * (9 << 20), headers={**headers, "content-type": "application/json"})
    assert reply.status_code == 413, reply.status_code
    reply = httpx.get(f"{base_url}/embeddings", headers=headers)
    assert reply.status_code == 405, reply.status_code
    reply = httpx.get(f"{base_url}/models")
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    # The vectors' bytes: base64 of little-endian float32, as OpenAI sends them.
    reply = httpx.post(f"{base_url}/embeddings", json={"model": EMBED, "input": "hello", "encoding_format": "base64"}, headers=headers)
    floats = struct.unpack("<384f", base64.b64decode(reply.json()["data"][0]["embedding"]))
    reply = httpx.post(f"{base_url}/embeddings", json={"model": EMBED, "input": "hello"}, headers=headers)
    listed = reply.json()["data"][0]["embedding"]
    assert all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(floats, listed))


def main():
    base_url, api_key, reference_path = sys.argv[1:4]
    import json

    with open(reference_path, encoding="utf-8") as f:
        reference = json.load(f)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
    expect_error(
        openai.AuthenticationError,
        401,
        lambda: openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list(),
    )
    check_models(client)
    check_embeddings(client, reference)
    check_chat(client)
    check_raw(base_url, api_key)
    print("checks passed")


if __name__ == "__main__":
    main()
