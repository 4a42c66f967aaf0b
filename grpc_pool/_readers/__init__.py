"""The readers' side: the one reader API over the published state (``reader``),
the strategies that pick, the pool as one ``grpc.Channel`` (``poolchannel``,
``multicallable``) and the figures ``status()``/``stats()`` build. Any thread,
no lock on the hot path. May import ``_base``, ``_config``, ``_contract`` and
``_channel``; never the writer, the workers or the public face."""
