"""wschat: serverless real-time chat on API Gateway WebSocket APIs, and a local gateway to run it.

The package splits into what ships to Lambda and what only runs locally:

* Lambda side: ``protocol``, ``service``, ``events``, ``ids``, ``observability``, ``storage``,
  ``delivery`` and ``handlers``. Importing a handler never pulls in websockets, the gateway or
  the CLI, so the deployment package stays small and cold starts stay fast.
* Local side: ``gateway`` (the API Gateway WebSocket emulation) and ``cli``.
"""

__version__ = "0.1.0"
