"""Configuration: ``PoolConfig`` and the checks of every value (``config``,
``validate``, ``options`` for channel options), reading it from text (``env``),
and what a target names (``targets``). May import the leaves (``_base``) only."""
