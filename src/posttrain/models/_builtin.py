"""Import the built-in backends so their `@register_backend` decorators run.

They register exactly as an outside plugin would; this module only makes sure they are loaded
before `create_backend` or `backend_kinds` looks them up.
"""

from posttrain.models import best_of_n, local, openai_http  # noqa: F401
from posttrain.reward import backend as reward_backend  # noqa: F401  (the `reward_model` kind)
