"""The writer: the one thread that changes a pool's layout (``loop``), the handlers
that decide what each command changes (``layout``, ``spread``, ``timers``,
``retire``, ``policy``, ``slots``), and the reaper thread that closes channels.
May import ``_base``, ``_config``, ``_contract``, ``_channel`` and ``_workers`` (it
starts the workers); never the readers or the public face."""
