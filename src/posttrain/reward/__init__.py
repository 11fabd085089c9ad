"""Reward models: pairwise (Bradley–Terry, TRL's RewardTrainer) and pointwise (thumbs) training,
scoring, evaluation with intervals and calibration, and a bias audit.

Public API (the CLI `posttrain reward` only calls these):
`train_reward_model`, `load_reward_model`, `evaluate_reward_model`, `score_file`,
`audit_reward_model`, `is_flagged`, `register_store_reward_models`.
"""

from posttrain.reward._registry import (
    evaluate_reward_model,
    is_flagged,
    load_reward_model,
    register_store_reward_models,
    score_file,
)
from posttrain.reward._train import train_reward_model
from posttrain.reward.audit import audit_reward_model

__all__ = [
    "audit_reward_model",
    "evaluate_reward_model",
    "is_flagged",
    "load_reward_model",
    "register_store_reward_models",
    "score_file",
    "train_reward_model",
]

