"""The HTTP thread API (contract v2, "HTTP API"): routes, routing to the owner, SSE.

Independent of faust and Kafka: the worker plugs in a `ThreadBackend` and mounts the routes
on its aiohttp application before the web server starts:

    if (problem := bind_problem(settings)) is not None:
        raise ConfigurationError(problem)            # refuse to start
    add_routes(app.web.web_app, backend, settings)   # faust's aiohttp Application
"""

from processors.api.backend import Owner, StreamMessage, Submitted, ThreadBackend
from processors.api.problems import ApiProblem
from processors.api.routes import ThreadApi, add_routes
from processors.api.security import bind_problem

__all__ = [
    "ApiProblem",
    "Owner",
    "StreamMessage",
    "Submitted",
    "ThreadApi",
    "ThreadBackend",
    "add_routes",
    "bind_problem",
]
