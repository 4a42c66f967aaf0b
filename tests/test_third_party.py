"""Real client libraries over the pool as one channel: a Google Cloud GAPIC client,
grpcio-tools generated stubs, py-grpc-prometheus and OpenTelemetry interceptors,
grpc.intercept_channel and grpc.channel_ready_future, against loopback servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest

import grpc_pool
from grpc_pool._workers.watch import checker
from grpc_pool.testing import CHAT, ECHO, ECHO_STREAM, EchoServer

from .conftest import FAST, wait_until
from .generated import PingPongServer, compile_pingpong


@pytest.fixture(scope="module")
def pingpong(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    return compile_pingpong(Path(tmp_path_factory.mktemp("generated")))


@pytest.fixture
def pingpong_server(pingpong: tuple[ModuleType, ModuleType]) -> Iterator[PingPongServer]:
    server = PingPongServer(*pingpong).start()
    yield server
    server.stop()


# Google's libraries warn (FutureWarning, at import) about the environment, not the
# pool: google-api-core on a Python past its end of life (3.10 after October 2026),
# google-auth on grpcio < 1.83 (the floor run, .ci/floor.txt).
GAPIC_ENVIRONMENT_WARNINGS = pytest.mark.filterwarnings(
    "ignore::FutureWarning:google.api_core._python_version_support",
    "ignore::FutureWarning:google.auth.transport.grpc",
)


class FakePublisher:
    """google.pubsub.v1.Publisher/Publish on loopback, built from the client
    library's own message types; records the peer (TCP connection) of every call."""

    def __init__(self) -> None:
        from google.pubsub_v1 import types

        self.peers: list[str] = []
        self._lock = threading.Lock()

        def publish(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.peers.append(context.peer())
            ids = [f"{len(self.peers)}-{i}" for i in range(len(request.messages))]
            return types.PublishResponse(message_ids=ids)

        handler = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "Publish": grpc.unary_unary_rpc_method_handler(
                    publish,
                    request_deserializer=types.PublishRequest.deserialize,
                    response_serializer=types.PublishResponse.serialize,
                )
            },
        )
        self._executor = futures.ThreadPoolExecutor(8, thread_name_prefix="fake-pubsub")
        self.server = grpc.server(self._executor)
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait(10)
        self._executor.shutdown(wait=True)


@GAPIC_ENVIRONMENT_WARNINGS
def test_gapic_client_spreads_over_every_connection() -> None:
    """google-cloud-pubsub's GAPIC PublisherClient on PublisherGrpcTransport(channel=
    pool.channel): 200 publishes from 8 threads use all 4 connections (server-side
    peers) and every RPC is counted in stats()."""
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    fake = FakePublisher()
    try:
        with grpc_pool.Pool(f"127.0.0.1:{fake.port}", size=4, **FAST) as pool:
            pool.wait_ready(timeout=10, min_ready=4)
            client = PublisherClient(transport=PublisherGrpcTransport(channel=pool.channel))
            errors: list[BaseException] = []

            def publish() -> None:
                try:
                    for _ in range(25):
                        response = client.publish(
                            topic="projects/p/topics/t", messages=[{"data": b"x"}], timeout=10
                        )
                        assert len(response.message_ids) == 1
                except BaseException as error:
                    errors.append(error)

            threads = [threading.Thread(target=publish) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert not errors
            assert len(fake.peers) == 200
            assert len(set(fake.peers)) == 4
            assert pool.stats().rpcs_total == 200
    finally:
        fake.stop()


@GAPIC_ENVIRONMENT_WARNINGS
def test_gapic_retries_see_the_pool_error_as_unavailable() -> None:
    """With nothing to connect to, the GAPIC client's own error mapping turns the
    pool's NoChannelAvailable into google.api_core ServiceUnavailable (it is a
    grpc.RpcError with code UNAVAILABLE)."""
    from google.api_core import exceptions
    from google.pubsub_v1.services.publisher import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    fake = FakePublisher()
    port = fake.port
    fake.stop()
    with grpc_pool.Pool(f"127.0.0.1:{port}", size=1, **FAST) as pool:
        wait_until(lambda: pool.stats().connect_failures > 0, what="a failed attempt")
        client = PublisherClient(transport=PublisherGrpcTransport(channel=pool.channel))
        with pytest.raises(exceptions.ServiceUnavailable):
            client.publish(
                topic="projects/p/topics/t", messages=[{"data": b"x"}], retry=None, timeout=5
            )


def test_generated_stub_built_once_survives_layout_changes(
    pingpong: tuple[ModuleType, ModuleType], pingpong_server: PingPongServer
) -> None:
    """A grpcio-tools stub (registered methods) built right after Pool() — as at
    import time — works at once, and keeps working across scale down/up and
    max-age refresh with no ValueError; its RPCs use every connection."""
    pb2, pb2_grpc = pingpong
    options = {**FAST, "retire_grace": 0.1}
    with grpc_pool.Pool(pingpong_server.target, size=3, max_connection_age=0.4, **options) as pool:
        stub = pb2_grpc.PingPongStub(pool.channel)
        assert stub.Unary(pb2.Ping(text="first"), timeout=10).text == "first"
        pool.wait_ready(timeout=10, min_ready=3)
        for step in range(8):
            if step == 2:
                pool.scale_down(2)
            elif step == 5:
                pool.scale_up(2)
            for _ in range(30):
                assert stub.Unary(pb2.Ping(text="u"), timeout=5, wait_for_ready=True).text == "u"
            pongs = list(stub.ServerStream(pb2.Ping(text="s", count=3), timeout=5))
            assert [p.text for p in pongs] == ["s"] * 3
            requests = iter([pb2.Ping(text="a"), pb2.Ping(text="b")])
            assert [p.text for p in stub.Bidi(requests, timeout=5)] == ["a", "b"]
            wait_until(lambda: pool.stats().retiring == 0, what="retired channels closed")
        assert len(pingpong_server.peers) > 3  # refreshes made new connections, all used
        assert pool.stats().in_flight == 0


def _check_streams(pool: grpc_pool.Pool) -> None:
    channel = pool.channel
    for _ in range(5):
        assert list(channel.unary_stream(ECHO_STREAM)(b"3", timeout=5)) == [b"3"] * 3
        assert list(channel.stream_stream(CHAT)(iter([b"p", b"q"]), timeout=5)) == [b"p", b"q"]
        for _reply in channel.unary_stream(ECHO_STREAM)(b"1000", timeout=30):
            break  # dropped mid-stream
    assert channel.unary_unary(ECHO)(b"u", timeout=5) == b"u"
    assert channel.unary_unary(ECHO).future(b"f", timeout=5).result(timeout=5) == b"f"
    wait_until(lambda: pool.stats().in_flight == 0, what="in-flight back to 0")


def test_py_grpc_prometheus_interceptor_streams(server: EchoServer) -> None:
    """py-grpc-prometheus's client interceptor (it returns plain generators for
    streamed responses) through interceptors=: server-streaming and bidi calls
    work, its metrics count them, and the in-flight count returns to 0."""
    from prometheus_client import CollectorRegistry
    from py_grpc_prometheus.prometheus_client_interceptor import PromClientInterceptor

    registry = CollectorRegistry()
    interceptor = PromClientInterceptor(registry=registry)
    with grpc_pool.Pool(server.target, size=2, interceptors=[interceptor], **FAST) as pool:
        _check_streams(pool)
        with grpc_pool.Pool(server.target, size=1, interceptors=[interceptor], **FAST) as other:
            other.wait_ready(timeout=10)
        pool.close(grace=5)  # returns at once: nothing is counted in flight
    started = registry.get_sample_value(
        "grpc_client_started_total",
        {
            "grpc_type": "SERVER_STREAMING",
            "grpc_service": "grpc_pool.demo.Echo",
            "grpc_method": "EchoStream",
        },
    )
    assert started == 10


def test_opentelemetry_auto_instrumentation_streams(server: EchoServer) -> None:
    """OpenTelemetry's grpc client auto-instrumentation (it patches
    grpc.insecure_channel, which the pool calls) with server-streaming and bidi
    calls: they work, spans are recorded, and the in-flight count returns to 0."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # The instrumentation records through the global tracer provider (set once per process).
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = GrpcInstrumentorClient()
    instrumentor.instrument()
    try:
        with grpc_pool.Pool(server.target, size=2, **FAST) as pool:
            assert type(pool.get_channel(timeout=10)._raw).__module__.startswith("opentelemetry")
            # The watcher reads grpcio's state through the wrapper: no poller per channel.
            assert all(checker(c._raw) is not None for c in pool._snapshot)
            _check_streams(pool)
            channels = list(pool._snapshot)
        assert all(not c._poller_running() for c in channels)
    finally:
        instrumentor.uninstrument()
        exporter.shutdown()
    names = {span.name for span in exporter.get_finished_spans()}
    assert "/grpc_pool.demo.Echo/EchoStream" in names and "/grpc_pool.demo.Echo/Chat" in names


class _Counting(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls += 1
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls += 1
        return continuation(details, request)


def test_intercept_channel_over_the_pool(server: EchoServer) -> None:
    """grpc.intercept_channel(pool.channel, ...) works (it builds a multi-callable
    per RPC: the pool's cache does not grow) and spreads over the connections."""
    interceptor = _Counting()
    with grpc_pool.Pool(server.target, size=3, **FAST) as pool:
        pool.wait_ready(timeout=10, min_ready=3)
        channel = grpc.intercept_channel(pool.channel, interceptor)
        echo = channel.unary_unary(ECHO)
        for _ in range(30):
            assert echo(b"i", timeout=5) == b"i"
        assert list(channel.unary_stream(ECHO_STREAM)(b"2", timeout=5)) == [b"2", b"2"]
        assert interceptor.calls == 31
        assert len(pool.channel._callables) == 2
        assert sorted(c.rpcs_total for c in pool._snapshot)[0] >= 10


def test_channel_ready_future(server: EchoServer) -> None:
    """grpc.channel_ready_future(pool.channel) resolves once the pool has a ready channel."""
    with grpc_pool.Pool(server.target, size=2, **FAST) as pool:
        grpc.channel_ready_future(pool.channel).result(timeout=10)
        assert pool.status().current_size >= 1
