"""The threads that own connections: one worker per slot (connect, watch, report,
reconnect with backoff; health checks and priming in ``upkeep``/``health``) and
the resolver that finds the backends. They report to the writer only through
its queue. May import ``_base``, ``_config``, ``_contract`` and ``_channel``."""
