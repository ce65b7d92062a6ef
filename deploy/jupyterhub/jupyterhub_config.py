# JupyterHub with one nbfeed feed server for every user (see README, "Deploying on JupyterHub").
#
# Redis runs on its own (deploy/redis/), with the ACL users of deploy/redis/users.acl. Passwords
# come from the hub's environment - never from this file, never from a command line.
import os

REDIS = os.environ.get("NBFEED_REDIS_HOSTPORT", "127.0.0.1:6379")

# The feed server: a Hub-managed service, started with the hub and restarted if it exits. It
# runs the providers once for everyone, with the history cache and catalog in its own home.
c.JupyterHub.services = [
    {
        "name": "nbfeed-feed",
        "command": ["nbfeed", "feed-server",
                    "--provider", "binance", "--provider", "polygon",
                    "--option", "polygon.api_key=env:POLYGON_API_KEY",
                    "--home", "/srv/nbfeed"],
        "environment": {
            "NBFEED_BUS": f"redis://nbfeed-feed@{REDIS}/0",         # rediss:// for TLS
            "NBFEED_BUS_PASSWORD": os.environ["NBFEED_FEED_PASSWORD"],
            "POLYGON_API_KEY": os.environ.get("POLYGON_API_KEY", ""),
        },
    },
]

# Every user's server: no provider of its own, the shared feed instead (the user role can read
# the streams and ask for them; it cannot publish data or command providers).
c.Spawner.environment = {
    "NBFEED_BUS": f"redis://nbfeed-user@{REDIS}/0",
    "NBFEED_BUS_PASSWORD": os.environ["NBFEED_USER_PASSWORD"],
}
