"""Chats with an edgerag project through OpenAI's own Python client (`openai`, over a real socket).

Usage: respond_openai.py <base_url ending in /v1> <api_key> <project>

The project holds the respond tests' knowledge (a refund policy among others). Prints "checks
passed" at the end; any failed check raises.
"""

import sys

import openai


def main():
    base_url, api_key, project = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)

    models = [m.id for m in client.models.list().data]
    assert models == [project], models

    question = "How long does a refund take to reach my card?"
    # Whole: `model` names the project; the answer comes with its citations in an extra field.
    completion = client.chat.completions.create(
        model=project,
        messages=[
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": question},
        ],
    )
    assert completion.object == "chat.completion", completion
    assert completion.model == project
    text = completion.choices[0].message.content
    assert text and text.strip(), completion
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 50, completion.usage
    extra = completion.model_extra or {}
    assert extra.get("source") == "model", extra
    for citation in extra.get("citations", []):
        assert citation["chunk_id"] and citation["document"], citation

    # Streamed, the model left to the key, with usage at the end.
    stream = client.chat.completions.create(
        model="",
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage, last = [], None, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices:
            choice = chunk.choices[0]
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
                last = chunk
    assert len(pieces) >= 2, pieces
    assert finish == "stop", finish
    assert usage is not None and usage.completion_tokens > 0, usage
    assert "citations" in (last.model_extra or {}), last

    # Follow-up with history, as chat UIs send it.
    follow = client.chat.completions.create(
        model=project,
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": "".join(pieces)},
            {"role": "user", "content": "And gift cards?"},
        ],
    )
    assert follow.choices[0].message.content is not None

    # Errors arrive as OpenAI errors.
    try:
        client.chat.completions.create(model=project, messages=[])
        raise AssertionError("an empty conversation was accepted")
    except openai.BadRequestError as error:
        assert error.status_code == 400
    try:
        client.chat.completions.create(
            model="someone-elses-project", messages=[{"role": "user", "content": "hi"}]
        )
        raise AssertionError("another project was reachable")
    except openai.PermissionDeniedError as error:
        assert error.status_code == 403
    bad = openai.OpenAI(base_url=base_url, api_key="not-a-key", max_retries=0)
    try:
        bad.chat.completions.create(model=project, messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as error:
        assert error.status_code == 401
    print("checks passed")


if __name__ == "__main__":
    main()
