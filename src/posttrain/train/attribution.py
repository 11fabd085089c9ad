"""Reward attribution: what each signal of the mix did, step by step, and the dominance alarm.

GRPO learns from advantages: each answer's total reward minus the mean of its group (the
answers to the same prompt). So the share that matters is the share of the WITHIN-GROUP
variance of the total reward. With c_i the group-centred contribution (weight x capped value)
of signal i and t = sum_i c_i the centred total,

    share_i = sum(c_i * t) / sum(t * t)

These shares add up to 1 (a signal that works against the others gets a negative share); a
signal that is constant within every group has share 0, whatever its mean: it moves nothing.
The alarm fires when one signal's share stays above `threshold` for `steps` logged steps in a
row (only for mixes of two or more signals: a single signal trivially has share 1).
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from typing import Any

from posttrain.train.rewards import Messages, RewardMix


def centred_shares(contribs: list[list[float]], groups: list[Any]) -> tuple[list[float], float]:
    """(sum(c_i * t) per signal, sum(t * t)) after centring each signal within its group."""
    n_sig, n = len(contribs), len(groups)
    members: dict[Any, list[int]] = defaultdict(list)
    for j, g in enumerate(groups):
        members[g].append(j)
    centred = [[0.0] * n for _ in range(n_sig)]
    for idx in members.values():
        for i in range(n_sig):
            mean = sum(contribs[i][j] for j in idx) / len(idx)
            for j in idx:
                centred[i][j] = contribs[i][j] - mean
    total = [sum(centred[i][j] for i in range(n_sig)) for j in range(n)]
    cov = [sum(centred[i][j] * total[j] for j in range(n)) for i in range(n_sig)]
    return cov, sum(t * t for t in total)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return 0.0, 0.0
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


class Attribution:
    """Collects signal values batch by batch (fed by the reward functions) and turns them into
    per-step records and alarms when the trainer logs."""

    def __init__(self, mix: RewardMix, threshold: float = 0.6, steps: int = 3, warn: bool = True) -> None:
        self.mix = mix
        self.names = mix.names
        self.threshold, self.alarm_steps, self.warn = threshold, steps, warn
        self._pending: dict[str, list[float]] = defaultdict(list)  # raw values since the last log
        self._pending_cov = [0.0] * len(self.names)
        self._pending_var = 0.0
        self._pending_total: list[float] = []
        self._all: dict[str, list[float]] = defaultdict(list)
        self._cov = [0.0] * len(self.names)
        self._var = 0.0
        self._batch: dict[str, list[float]] = {}
        self.steps: list[dict[str, Any]] = []
        self.alarms: list[dict[str, Any]] = []
        self._streak: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._open: dict[str, int] = {}  # signal -> its alarm's index while the stretch goes on

    # -- fed by the reward functions -----------------------------------------------------------

    def add(self, name: str, prompts: list[Messages], values: list[float]) -> None:
        """One signal's capped values for one generation batch; the batch is booked when every
        signal of the mix has reported (TRL calls them in order)."""
        self._batch[name] = values
        if len(self._batch) < len(self.names):
            return
        groups = [json.dumps(p, sort_keys=True) for p in prompts]
        contribs = [[s.weight * v for v in self._batch[s.name]] for s in self.mix.signals]
        cov, var = centred_shares(contribs, groups)
        for i, name_i in enumerate(self.names):
            self._pending[name_i] += self._batch[name_i]
            self._all[name_i] += self._batch[name_i]
            self._pending_cov[i] += cov[i]
            self._cov[i] += cov[i]
        self._pending_var += var
        self._var += var
        self._pending_total += [sum(c[j] for c in contribs) for j in range(len(prompts))]
        self._batch = {}

    # -- called when the trainer logs ----------------------------------------------------------

    def close_step(self, step: int) -> dict[str, Any] | None:
        """Book everything since the last call as the record of `step`; check the alarm."""
        if not self._pending_total:
            return None
        rec: dict[str, Any] = {"step": step, "reward": round(_mean_std(self._pending_total)[0], 6)}
        shares = {}
        for i, name in enumerate(self.names):
            rec[name] = round(_mean_std(self._pending[name])[0], 6)
            shares[name] = round(self._pending_cov[i] / self._pending_var, 4) if self._pending_var > 1e-12 else None
        rec["shares"] = shares
        self.steps.append(rec)
        self._check_alarm(step, shares)
        self._pending = defaultdict(list)
        self._pending_cov = [0.0] * len(self.names)
        self._pending_var, self._pending_total = 0.0, []
        return rec

    def _check_alarm(self, step: int, shares: dict[str, float | None]) -> None:
        if len(self.names) < 2:
            return
        for name, share in shares.items():
            streak = self._streak[name]
            if share is None or share <= self.threshold:
                streak.clear()
                self._open.pop(name, None)
                continue
            streak.append({"step": step, "share": share})
            if len(streak) < self.alarm_steps:
                continue
            mean_share = round(sum(s["share"] for s in streak) / len(streak), 4)
            span = [streak[0]["step"], step]
            if name in self._open:  # the same stretch goes on: extend its alarm
                self.alarms[self._open[name]].update(share=mean_share, steps=span)
                continue
            self._open[name] = len(self.alarms)
            self.alarms.append({"kind": "dominance", "signal": name, "share": mean_share, "steps": span})
            if self.warn:
                warnings.warn(f"reward signal {name!r} dominates: {mean_share:.0%} of the reward variance "
                              f"over steps {span[0]}-{span[1]} (bound {self.threshold:.0%})", stacklevel=2)

    def summary(self) -> dict[str, Any]:
        """`{"signals": {NAME: {mean, std, variance_share}}, "steps": [...]}` over the whole run."""
        signals = {}
        for i, name in enumerate(self.names):
            m, s = _mean_std(self._all[name])
            share = self._cov[i] / self._var if self._var > 1e-12 else None
            signals[name] = {"mean": round(m, 6), "std": round(s, 6),
                             "variance_share": None if share is None else round(share, 4)}
        return {"signals": signals, "steps": self.steps}

    # -- checkpointing ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to continue the record (saved beside each checkpoint)."""
        return {"all": dict(self._all), "cov": self._cov, "var": self._var, "steps": self.steps,
                "alarms": self.alarms, "streak": dict(self._streak), "open": self._open}

    def load_state(self, state: dict[str, Any]) -> None:
        self._all = defaultdict(list, state.get("all", {}))
        self._cov = list(state.get("cov", self._cov))
        self._var = float(state.get("var", 0.0))
        self.steps = list(state.get("steps", []))
        self.alarms = list(state.get("alarms", []))
        self._streak = defaultdict(list, state.get("streak", {}))
        self._open = dict(state.get("open", {}))


def print_attribution(summary: dict[str, Any], alarms: list[dict[str, Any]]) -> str:
    """The human-readable attribution table `posttrain train grpo` prints."""
    lines = [f"{'SIGNAL':<28} {'MEAN':>9} {'STD':>9} {'VAR SHARE':>10}"]
    for name, s in summary["signals"].items():
        share = "-" if s["variance_share"] is None else f"{s['variance_share']:.0%}"
        lines.append(f"{name:<28} {s['mean']:>9.3f} {s['std']:>9.3f} {share:>10}")
    for a in alarms:
        lines.append(f"ALARM dominance: {a['signal']} held {a['share']:.0%} of the reward variance over steps {a['steps'][0]}-{a['steps'][1]}")
    ev = summary.get("eval") or {}
    for m in ev.get("metrics", []):
        lines.append(f"eval {m['suite']}.{m['metric']}: {m['base']} -> {m['trained']} ({m['delta']:+})")
    for mv in ev.get("moved", []):
        lines.append(f"  {mv['signal']} ~ {mv['suite']}/{mv['grader']}: r = {mv['corr']:+.2f} over {mv['n']} cases")
    return "\n".join(lines)
