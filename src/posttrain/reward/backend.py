"""The `reward_model` backend kind: how a trained reward model sits in the model registry.

A registry row needs a backend kind; a reward model's is this one, with config {"path": folder}.
It scores rather than generates, so `generate`/`stream` refuse with a one-line reason; serve it
inside a `best_of_n` model, or grade with it through the `reward_model` grader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from posttrain.models.base import DecodingParams, Generation, Messages, StreamChunk, register_backend
from posttrain.reward._model import TrainedRewardModel, read_meta


@register_backend("reward_model")
class RewardModelBackend:
    """A registered reward model; `scorer` is the loaded RM (built on first use)."""

    def __init__(self, path: str, name: str = "reward-model") -> None:
        folder = Path(path).expanduser()
        read_meta(folder)  # refuses a folder that is not a trained reward model, at registration
        self.path = str(folder.resolve())
        self.name = name

    @property
    def scorer(self) -> TrainedRewardModel:
        from posttrain.reward._registry import scorer_for_path

        return scorer_for_path(self.path, self.name)

    def _refuse(self) -> ValueError:
        return ValueError(f"{self.name} is a reward model: it scores answers but does not write them; "
                          "register a best_of_n model over a chat model to serve it")

    def generate(self, conversations: list[Messages], params: DecodingParams) -> list[Generation]:
        raise self._refuse()

    def stream(self, conversation: Messages, params: DecodingParams) -> Iterator[StreamChunk]:
        raise self._refuse()

    def version(self) -> str:
        return self.scorer.version()
