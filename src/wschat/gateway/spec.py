"""What the gateway serves: an API's route selection expression and its routes' functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROUTE_SELECTION = "$request.body.action"
DEFAULT_TIMEOUT_SECONDS = 3.0  # Lambda's default function timeout
DEFAULT_MEMORY_MB = 128


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function: where its code is and how it runs."""

    name: str  # the template's logical id, or the handler string for --route
    handler: str  # "package.module.function"
    code_dir: Path  # put first on sys.path, like Lambda's /var/task
    environment: dict[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB


@dataclass(frozen=True)
class RouteSpec:
    """One route key bound to a function; ``two_way`` when the route has a route response,
    in which case the handler's returned ``body`` is sent back to the caller."""

    route_key: str
    function: FunctionSpec
    two_way: bool = False


@dataclass(frozen=True)
class ApiSpec:
    """A WebSocket API: its route selection expression and routes by key."""

    name: str
    routes: dict[str, RouteSpec]
    route_selection_expression: str = DEFAULT_ROUTE_SELECTION

    @property
    def functions(self) -> list[FunctionSpec]:
        seen: dict[str, FunctionSpec] = {}
        for route in self.routes.values():
            seen.setdefault(route.function.name, route.function)
        return list(seen.values())
