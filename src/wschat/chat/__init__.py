"""The chat's use cases and the one deliverer that runs what they return.

- ``registry``: one row per action (its command, use case, function group and store needs);
  the handlers' allowed actions, the CLI's routes, the template's routes and each function's
  IAM derive from it.
- ``rooms``, ``messages``, ``lifecycle``: use cases. Each reads and writes the store it is
  given and returns delivery intents (``intents``): what to send to whom, nothing sent yet.
- ``deliverer``: runs intents, inline for small rooms or as fan-out jobs on the queue for big
  ones (docs/scaling.md), and turns connections found gone into the forget use case.

``wschat.service.ChatService`` is the front door the handlers call.
"""
