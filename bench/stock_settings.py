"""Settings for the stock comparison (`bench/stock_asgi.py`): ours, with channels_redis' default layer.

`channels_redis.core.RedisChannelLayer` is what the Channels tutorial configures: per-channel Redis
lists with a capacity (100 by default, excess silently dropped) and group membership in sorted sets.
"""

from mlops_dashboard.settings import *  # noqa: F403
from mlops_dashboard.settings import REDIS_KEY_PREFIX, REDIS_URL

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_KEY_PREFIX}:stock"},
    }
}
