"""Lambda entry points, one module per route as in the seed: ``connect``, ``disconnect``,
``send_message`` and ``default`` (unknown actions). Each is thin: it reads the event, calls the
chat service and shapes the reply. Adapters are built once per cold start in ``_runtime``."""
