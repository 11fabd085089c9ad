"""Request bodies of the JSON API (pydantic), as documented in /openapi.json.

Types are strict: a string is not a boolean or a number (`"stream": "yes"` is a 422 naming the
field, not a stream). The chat request follows OpenAI's. Every OpenAI field posttrain does not
support is refused with a 400 naming it (never silently ignored): see UNSUPPORTED_HINT and
`ChatRequest.unsupported()`. Which text is acceptable at all (no NUL, no lone surrogates) is
decided before these models run, in serve/guard.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

MAX_TOKENS = 4096
MAX_INSTRUCTIONS = 8000
MAX_MEMORY = 2000
MAX_TOOLS = 128

# Fields the OpenAI API defines that posttrain cannot honour: named in the 400.
UNSUPPORTED_HINT = (
    "posttrain supports model, messages, max_tokens, max_completion_tokens, temperature, top_p, "
    "stop, seed, n, stream, stream_options, tools, tool_choice, parallel_tool_calls, "
    "response_format and conversation_id"
)
_STRICT = ConfigDict(strict=True, extra="forbid")


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200)
    arguments: str = Field(max_length=100_000)


class ToolCall(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(BaseModel):
    # extra="allow": unknown message fields are collected and refused by name (400), like the
    # request's own; the published schema still says no other fields.
    model_config = ConfigDict(strict=True, extra="allow", json_schema_extra={"additionalProperties": False})
    # "developer" is OpenAI's newer name for the system role.
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, min_length=1, max_length=200)
    tool_calls: list[ToolCall] | None = Field(None, min_length=1, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _shape(self) -> "ChatMessage":
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: required (only an assistant message with tool_calls may omit it)")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls: only allowed on assistant messages")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("tool_call_id: required on tool messages and only there")
        return self

    def uses_tools(self) -> bool:
        return self.role == "tool" or bool(self.tool_calls) or self.name is not None

    def plain(self) -> dict[str, Any]:
        """{"role", "content"} with text parts joined and developer mapped to system, plus the
        tool fields when present (passed to the upstream unchanged)."""
        if isinstance(self.content, list):
            content = "".join(p.text for p in self.content)
        else:
            content = self.content or ""
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_usage: StrictBool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    name: str = Field(min_length=1, max_length=200)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    model_config = _STRICT
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema(self) -> "ResponseFormat":
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema: required when type is json_schema, and only then")
        return self


class ChatRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", json_schema_extra={"additionalProperties": False})
    model: str | None = Field(None, min_length=1, max_length=200, description="registered model name; default: the server's")
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: StrictInt | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(None, ge=0, le=2**63 - 1)
    n: StrictInt = Field(1, ge=1, le=4)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = Field(
        None, min_length=1, max_length=MAX_TOOLS,
        description="OpenAI tool definitions, passed unchanged to an OpenAI-compatible upstream",
    )
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    conversation_id: str | None = Field(
        None, max_length=200, description="continue this conversation (must be yours)"
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return v

    @field_validator("tools")
    @classmethod
    def _tools(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, tool in enumerate(v or []):
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict):
                raise ValueError(f'[{i}]: must be {{"type": "function", "function": {{...}}}}')
            if not isinstance(fn.get("name"), str) or not fn["name"]:
                raise ValueError(f"[{i}].function.name: required (a string)")
        return v

    @field_validator("messages")
    @classmethod
    def _last_is_user(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if v and v[-1].role not in ("user", "tool"):
            raise ValueError("the last message must have role user (or tool, answering a tool call)")
        return v

    def unsupported(self) -> str | None:
        """The first field this server does not support (top level or in a message), or None."""
        for name in self.model_extra or {}:
            return name
        for i, m in enumerate(self.messages):
            for name in m.model_extra or {}:
                return f"messages[{i}].{name}"
        return None

    def uses_tools(self) -> str | None:
        """The first field that needs a tool-calling backend, or None."""
        if self.tools is not None:
            return "tools"
        if self.tool_choice is not None:
            return "tool_choice"
        if self.parallel_tool_calls is not None:
            return "parallel_tool_calls"
        for i, m in enumerate(self.messages):
            if m.uses_tools():
                field = "tool_calls" if m.tool_calls else "tool_call_id" if m.role == "tool" else "name"
                return f"messages[{i}].{field}"
        return None

    def upstream_extra(self) -> dict[str, Any]:
        """The OpenAI fields passed unchanged to an upstream that supports them."""
        extra: dict[str, Any] = {}
        if self.tools is not None:
            extra["tools"] = self.tools
        if self.tool_choice is not None:
            extra["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None:
            extra["parallel_tool_calls"] = self.parallel_tool_calls
        if self.response_format is not None and self.response_format.type != "text":
            extra["response_format"] = self.response_format.model_dump(by_alias=True, exclude_none=True)
        return extra


class ConsentIn(BaseModel):
    model_config = _STRICT
    consent: StrictBool


class InstructionsIn(BaseModel):
    model_config = _STRICT
    text: str = Field(max_length=MAX_INSTRUCTIONS, description="empty string clears")


class MemoryIn(BaseModel):
    model_config = _STRICT
    text: str = Field(min_length=1, max_length=MAX_MEMORY)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()
