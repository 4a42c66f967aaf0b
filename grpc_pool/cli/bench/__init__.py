"""``python -m grpc_pool bench``: the pool against baselines measured in the same run.

Every row times the pool's path and its baseline in one process, interleaved
round by round (the machine may be shared: load then hits both alike), and
reports pool / baseline. Targets only print PASS or MISS; nothing fails on a miss.
``benchmarks/`` (pytest-benchmark) runs the same scenarios.

Modules, one per group of rows: ``core`` (labels, settings, table, timing),
``server`` (the bench server child process), ``micro`` (1-2), ``rpc`` (3-4),
``writer`` (5a-5b), ``restart`` (5c), ``fork`` (5d-5e), ``rotation`` (5f),
``idle`` (5g-5j: idle CPU, threads and fork, in child processes), ``fleet`` (7a),
``backends`` (backends a test switches between behaviours, for the tests only),
``outliers`` (8a-8c), ``tail`` (9a-9f, one slow backend: every strategy and
hedging in one run, ``bench --tail``; both on ``grpc_pool.testing.deploy.tail``),
``run`` (the whole table), ``deploy`` (6a-6b and the per-API x kind table:
``bench --deploy``).
"""
