"""The built-in suites. Importing this package registers them with `evals.suite.register_suite`.

Each module is imported on its own so that a suite whose module is missing (or whose optional
dependency is not installed) leaves every other suite usable.
"""

from __future__ import annotations

import importlib

_MODULES = [
    "ifeval", "sycophancy", "engagement", "verbosity", "grounding", "capability", "northstar",
    # Measure, second part (each optional until its module lands)
    "darkbench", "syco_bench", "elephant", "ambiguity",
]

for _name in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ImportError as exc:
        if exc.name != f"{__name__}.{_name}":
            # The module exists but one of its own imports is missing: say which, don't hide it.
            import warnings

            warnings.warn(f"built-in suite {_name!r} not loaded: {exc}", stacklevel=1)
