"""The one protocol every model backend speaks.

A backend generates for a batch of conversations (lists of {"role", "content"} messages) with
decoding parameters, and can stream one conversation. Built-in backends register themselves with
`register_backend` exactly as an outside plugin would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class DecodingParams:
    """Decoding parameters, stored with every completion and eval result."""

    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DecodingParams":
        d = dict(d)
        d["stop"] = tuple(d.get("stop") or ())
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Generation:
    """One generated answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str = "stop"  # "stop", "length", or "tool_calls" (an upstream that called tools)
    extra: dict[str, Any] = field(default_factory=dict)
    # OpenAI-format tool calls the model made ([{"id", "type": "function", "function": {"name",
    # "arguments"}}]), from backends that take `tools` (see Backend below); None otherwise.
    tool_calls: list[dict[str, Any]] | None = None


@dataclass
class StreamChunk:
    """A piece of a streamed answer; the last chunk has finish_reason and token counts set."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class Backend(Protocol):
    """What posttrain needs from a model.

    Optional extras a backend may declare (the server checks with getattr):
    - `supports_tools = True`: `generate(..., extra={"tools", "tool_choice",
      "parallel_tool_calls", "response_format"})` passes those OpenAI fields on unchanged and
      accepts tool-role messages and assistant `tool_calls`; Generation.tool_calls holds the
      calls made. Backends without it get a 400 from the server for such requests.
    - `parallel_requests = N`: how many requests it serves at once (an upstream server that
      batches); without it the server gives the backend's CPU one request at a time.
    """

    name: str

    def generate(self, conversations: list[Messages], params: DecodingParams) -> list[Generation]:
        """One generation per conversation, in order."""
        ...

    def stream(self, conversation: Messages, params: DecodingParams) -> Iterator[StreamChunk]:
        """Stream one answer piece by piece."""
        ...

    def version(self) -> str:
        """A string that changes when the weights change (used in generation cache keys)."""
        ...


BackendFactory = Callable[..., Backend]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(kind: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make `kind` usable in the model registry (`models.backend` column)."""

    def deco(factory: BackendFactory) -> BackendFactory:
        _BACKENDS[kind] = factory
        return factory

    return deco


def backend_kinds() -> list[str]:
    from posttrain.models import _builtin  # noqa: F401  (registers local and openai)

    return sorted(_BACKENDS)


def create_backend(kind: str, **config: Any) -> Backend:
    """Instantiate a registered backend kind with its config."""
    from posttrain.models import _builtin  # noqa: F401

    if kind not in _BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[kind](**config)


async def astream(backend: Backend, conversation: Messages, params: DecodingParams) -> AsyncIterator[StreamChunk]:
    """Run a backend's blocking stream in a worker thread, yielding chunks to async code."""
    import asyncio
    import threading

    loop = asyncio.get_running_loop()
    q: asyncio.Queue = asyncio.Queue()
    done = object()

    def pump() -> None:
        try:
            for chunk in backend.stream(conversation, params):
                loop.call_soon_threadsafe(q.put_nowait, chunk)
        except BaseException as exc:  # surfaced to the consumer
            loop.call_soon_threadsafe(q.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(q.put_nowait, done)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        item = await q.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
