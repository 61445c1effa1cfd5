"""The streaming relay (serving/gateway/streams.py) sends the events one read from the engine
completed in one write. Here, without a server: the engine's bytes are cut into reads at every
position, and what reaches the client must be byte for byte what the event-by-event path
(httpx-sse's public `EventSource.aiter_sse`, one write per event) gives, with nothing complete
held back for a later read. The same relay runs against the fake engine in test_gateway.py and
against vLLM in test_gateway_vllm.py."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx
import pytest
from httpx_sse import EventSource

from serving.adapters.manager import Target
from serving.engine import EngineClient, EngineSet, Replica
from serving.gateway import PreparedChat
from serving.gateway.admission import Admission
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.streams import Rewrite, Upstream, relay

HEAD = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"voice@v1",'


def chunk(content: str, extra: str = "") -> str:
    delta = json.dumps({"content": content}, ensure_ascii=False)
    return HEAD + extra + f'"choices":[{{"index":0,"delta":{delta},"finish_reason":null}}]}}'


USAGE = HEAD + '"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}'
EVENTS = [
    chunk("Hi"),  # the first token: parsed (counted), written again
    chunk(" there"),  # nothing to change: the engine's bytes
    chunk(" café"),  # raw UTF-8 (2 bytes): escaped
    chunk(" ok", '"system_fingerprint":null,'),  # a null to drop
    chunk("!"),
    USAGE,
    "[DONE]",
]
STREAM = "".join(f"data: {event}\n\n" for event in EVENTS).encode()
TEXT = "Hi there café ok!"


class Reads(httpx.AsyncByteStream):
    """An engine's body, read by read as the test hands them over (None: the end)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def __aiter__(self):
        while (read := await self.queue.get()) is not None:
            yield read


class Given(httpx.AsyncByteStream):
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def __aiter__(self):
        for read in self.reads:
            yield read


@dataclass
class FakeLease:
    target: Target
    replica: Replica
    released: int = 0

    def release(self) -> None:
        self.released += 1


def upstream_of(stream: httpx.AsyncByteStream, metrics: GatewayMetrics) -> Upstream:
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)
    replica = Replica(EngineClient("http://engine"))
    lease = FakeLease(Target("voice", "voice@v1"), replica)
    ticket = Admission(metrics).admit("voice")
    route = "/v1/chat/completions"
    return Upstream(
        response, lease, ticket, EngineSet([replica]), metrics, route, "voice", time.perf_counter()
    )


def plain() -> PreparedChat:
    return PreparedChat("voice", {}, response_model="")


def app() -> PreparedChat:
    """An app's stream: renamed, and annotated before [DONE] with the whole text."""
    return PreparedChat(
        "voice@v1", {}, "helpdesk", annotate=lambda texts: {"chars": [len(t) for t in texts]}
    )


async def event_by_event(data: bytes, prepared: PreparedChat, wants_usage: bool) -> list[bytes]:
    """The reference: what each event of `data` becomes, one at a time, as the public
    `EventSource.aiter_sse` hands them out (b"" for an event that sends nothing)."""
    upstream = upstream_of(Given([data]), GatewayMetrics())
    rewrite = Rewrite(upstream, prepared, wants_usage)
    parts = []
    async for event in EventSource(upstream.response).aiter_sse():
        parts.append(rewrite(event.data))
        if rewrite.finished:
            break
    return parts


async def settle() -> None:
    """Let every task run until it waits for something (here: the next read)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def relayed_in_two_reads(cut: int, prepared: PreparedChat, wants_usage: bool):
    """The relay over STREAM read as STREAM[:cut] and STREAM[cut:]: (what was sent before the
    second read came, everything sent, the writes, the metrics, the lease)."""
    reads, metrics = Reads(), GatewayMetrics()
    upstream = upstream_of(reads, metrics)
    writes: list[bytes] = []

    async def client() -> None:
        async for write in relay(upstream, prepared, wants_usage):
            writes.append(write)

    task = asyncio.create_task(client())
    reads.queue.put_nowait(STREAM[:cut])
    await settle()
    early = b"".join(writes)
    assert not task.done(), "the relay ended before the engine's body did"
    reads.queue.put_nowait(STREAM[cut:])
    reads.queue.put_nowait(None)
    await asyncio.wait_for(task, 10)
    return early, b"".join(writes), writes, metrics, upstream.lease


@pytest.mark.parametrize(
    ("prepared", "wants_usage"),
    [(plain, False), (plain, True), (app, False)],
    ids=["plain", "plain-with-usage", "app"],
)
def test_a_stream_cut_at_every_byte_is_relayed_whole_in_order_and_at_once(prepared, wants_usage):
    async def check() -> None:
        parts = await event_by_event(STREAM, prepared(), wants_usage)
        whole = b"".join(parts)
        sent = [e[6:] for e in whole.decode().split("\n\n") if e]
        assert sent[-1] == "[DONE]" and all(e.isascii() for e in sent)  # café is escaped
        chunks = [json.loads(e) for e in sent[:-1]]
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]) == TEXT
        assert any("usage" in c for c in chunks) == wants_usage
        if prepared is plain:
            assert sent[1] == EVENTS[1]  # after the first token, unchanged bytes pass as sent
        else:
            assert {c["model"] for c in chunks} == {"helpdesk"}
            assert chunks[-1]["hybrid"] == {"served_by": "voice@v1", "chars": [len(TEXT)]}
        for cut in range(1, len(STREAM)):
            early, out, writes, metrics, lease = await relayed_in_two_reads(
                cut, prepared(), wants_usage
            )
            assert out == whole, f"cut at byte {cut}"
            # every event the first read completed was sent before the second read came
            complete = STREAM[:cut].count(b"\n\n")
            assert early == b"".join(parts[:complete]), f"cut at byte {cut}"
            assert len(writes) <= 2, f"cut at byte {cut}: one write per read, got {len(writes)}"
            assert lease.released == 1
            counted = metrics.registry.get_sample_value(
                "hybrid_tokens_total",
                {"kind": "completion", "model": "voice", "served": "voice@v1"},
            )
            assert counted == 5

    asyncio.run(check())


def test_a_stream_read_byte_by_byte_or_at_once_is_the_same():
    async def sent(reads: list[bytes]) -> list[bytes]:
        return [w async for w in relay(upstream_of(Given(reads), GatewayMetrics()), plain(), True)]

    async def check() -> None:
        whole = b"".join(await event_by_event(STREAM, plain(), True))
        at_once = await sent([STREAM])
        assert at_once == [whole]  # one read, one write
        byte_by_byte = await sent([STREAM[i : i + 1] for i in range(len(STREAM))])
        assert b"".join(byte_by_byte) == whole
        assert len(byte_by_byte) == len(EVENTS)  # one write per event (usage asked for)
        crlf = STREAM.replace(b"\n", b"\r\n")
        assert b"".join(await sent([crlf[i : i + 7] for i in range(0, len(crlf), 7)])) == whole

    asyncio.run(check())


def test_an_error_event_ends_the_stream_after_what_came_before_in_its_read():
    error = '{"error":{"message":"engine core died","type":"InternalServerError","code":500}}'
    data = f"data: {EVENTS[0]}\n\ndata: {EVENTS[1]}\n\ndata: {error}\n\ndata: {EVENTS[2]}\n\n"

    async def check() -> None:
        metrics = GatewayMetrics()
        upstream = upstream_of(Given([data.encode()]), metrics)
        writes = [w async for w in relay(upstream, plain(), False)]
        assert len(writes) == 1
        sent = [json.loads(e[6:]) for e in writes[0].decode().split("\n\n") if e]
        assert [c.get("choices", [{}])[0].get("delta", {}).get("content") for c in sent] == [
            "Hi",
            " there",
            None,
        ]
        assert sent[-1]["error"] == {
            "message": "engine core died",
            "type": "InternalServerError",
            "param": None,
            "code": "500",
        }
        assert upstream.lease.released == 1
        assert (
            metrics.registry.get_sample_value(
                "hybrid_requests_total",
                {"route": "/v1/chat/completions", "model": "voice", "status": "500"},
            )
            == 1
        )

    asyncio.run(check())


def test_a_stream_cut_off_before_done_sends_what_it_read_then_an_error():
    async def check() -> None:
        metrics = GatewayMetrics()
        upstream = upstream_of(Given([STREAM[: STREAM.index(b"data: [DONE]")]]), metrics)
        writes = [w async for w in relay(upstream, plain(), False)]
        assert len(writes) == 2
        assert writes[0] == b"".join((await event_by_event(STREAM, plain(), False))[:-1])
        error = json.loads(writes[1][6:])["error"]
        assert error["code"] == "engine_unavailable" and "retry in" in error["message"]
        assert not upstream.engines.replicas[0].healthy  # routed around until the next refresh
        assert upstream.lease.released == 1

    asyncio.run(check())
