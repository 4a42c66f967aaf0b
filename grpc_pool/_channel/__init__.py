"""A pooled channel: the ``grpc.Channel`` callers hold (``pooled``), its RPC
accounting and the gate that refuses RPCs once the pool closed it (``gate``), and
how one is built (``build``). May import ``_base`` and ``_config``; nothing above."""
