"""The two pieces of OpenAI's graders that run user-written text: `python` graders (the user's
`grade(sample, item)`, run in a separate interpreter with a timeout) and `multi`'s
`calculate_output` (parsed into a syntax tree and evaluated over a whitelist, never `eval`).

The subprocess is isolated (`python -I`: no user site, no PYTHON* variables), runs in an empty
temp folder with an empty environment and CPU-time and memory limits. That stops accidents
(an infinite loop, a runaway allocation), not a determined attacker: run graders you trust.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import subprocess
import sys
import tempfile
from typing import Any

_RUNNER = r"""
import json, sys
payload = json.load(sys.stdin)
ns = {"__name__": "grader"}
exec(compile(payload["source"], "<grader>", "exec"), ns)
out = []
for sample, item in payload["pairs"]:
    try:
        v = ns["grade"](sample, item)
        out.append({"reward": float(v)})
    except Exception as exc:
        out.append({"error": f"{type(exc).__name__}: {exc}"})
json.dump(out, sys.stdout)
"""


def _limits(timeout: float) -> Any:
    def apply() -> None:
        import resource

        cpu = int(math.ceil(timeout)) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # 2 GiB of address space

    return apply


def run_python_batch(source: str, samples: list[dict[str, Any]], items: list[dict[str, Any]],
                     timeout: float = 30.0) -> list[float]:
    """The user's grade(sample, item) for each pair, all in one subprocess (one interpreter start
    per batch, not per answer). ValueError on a timeout, a crash or a failing grade call."""
    payload = json.dumps({"source": source, "pairs": list(zip(samples, items))}, default=str)
    with tempfile.TemporaryDirectory(prefix="posttrain-grader-") as cwd:
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", _RUNNER], input=payload, capture_output=True,
                                  text=True, timeout=timeout, cwd=cwd, env={}, preexec_fn=_limits(timeout))
        except subprocess.TimeoutExpired:
            raise ValueError(f"python grader timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise ValueError(f"python grader failed: {last}")
    results = json.loads(proc.stdout)
    for r in results:
        if "error" in r:
            raise ValueError(f"python grader's grade() raised {r['error']}")
    return [r["reward"] for r in results]


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "exp": math.exp,
          "sqrt": math.sqrt, "log": math.log, "round": round}


def safe_formula(formula: str, values: dict[str, float]) -> float:
    """Evaluate `calculate_output` (+ - * / ^ %, parentheses, min max abs floor ceil exp sqrt log
    round, grader names, numbers). ValueError naming what is not allowed."""
    try:
        tree = ast.parse(formula.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ValueError(f"calculate_output {formula!r} is not a valid formula") from None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ValueError(f"calculate_output: unknown name {node.id!r}; graders: {', '.join(values)}")
            return float(values[node.id])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(b) > 64:
                raise ValueError("calculate_output: exponent too large")
            try:
                return float(_BINOPS[type(node.op)](a, b))
            except ZeroDivisionError:
                raise ValueError(f"calculate_output {formula!r}: division by zero") from None
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return float(_UNARY[type(node.op)](ev(node.operand)))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and not node.keywords and node.args):
            return float(_FUNCS[node.func.id](*[ev(a) for a in node.args]))
        raise ValueError(f"calculate_output: {ast.unparse(node)!r} is not allowed (numbers, grader names, + - * / ^, and {', '.join(_FUNCS)})")

    return ev(tree)
