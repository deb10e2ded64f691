"""The error statuses in the OpenAPI: every status the gateway answers is declared, each with its
{"detail": ...} body (422s keep FastAPI's validation shape, see errors.py).

What a route's dependencies can answer is derived from them, so a new route declares those by asking
for its dependencies: a caller (401), an administrator (403), an upstream service (502, 503), a
request body (400 unparsable, 413 too large). What only the handler knows (404 for an id, 409, 415)
the route declares itself, with `errors(...)`."""
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel

from services.gateway.deps import admin_user, current_user, get_upstreams

ERRORS = {
    400: "The body cannot be parsed, or what it names is in a state that does not allow this.",
    401: "No valid credentials: a missing, expired, revoked or forged bearer token, or a wrong password.",
    403: "Not allowed: an administrator's route, or a wrong current password.",
    404: "Nothing with that id is visible to the caller (another user's is not found either).",
    409: "In conflict with the current state: the email is taken, or the report (CSV, timeline) is not done yet.",
    413: "Too large: the body (bytes), the image (pixels), the batch (files, bytes) or the video; the detail names the limit.",
    415: "The file is not an image (a video, for /videos) in an accepted format.",
    429: "Too many attempts; retry after the seconds in Retry-After.",
    502: "A service behind the gateway failed unexpectedly.",
    503: "A service the platform depends on is unavailable or not part of this deployment; retry shortly.",
}


class ErrorOut(BaseModel):
    detail: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route for these error statuses."""
    return {status: {"model": ErrorOut, "description": ERRORS[status]} for status in statuses}


def implied_statuses(route: RouteContext) -> set[int]:
    calls = set(_calls(route.dependant))
    statuses = set()
    if current_user in calls:
        statuses.add(401)
    if admin_user in calls:
        statuses.add(403)
    if get_upstreams in calls:
        statuses |= {502, 503}
    if route.body_field is not None:
        statuses |= {400, 413}
    return statuses


def declare_errors(app: FastAPI) -> None:
    """Adds each route's implied statuses to the app's OpenAPI (which FastAPI builds once and keeps)."""
    build = app.openapi
    declared = None

    def openapi() -> dict[str, Any]:
        nonlocal declared
        schema = build()
        if schema is not declared:  # FastAPI built it anew (the first time, or after routes changed)
            schema.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorOut", ErrorOut.model_json_schema())
            for route in iter_route_contexts(app.routes):
                if isinstance(route.original_route, APIRoute) and route.include_in_schema:
                    for method in route.methods:
                        responses = schema["paths"][route.path_format][method.lower()]["responses"]
                        for status in sorted(implied_statuses(route)):
                            responses.setdefault(str(status), _described(status))
            declared = schema
        return schema

    app.openapi = openapi


def _described(status: int) -> dict[str, Any]:
    return {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


def _calls(dependant: Dependant) -> Iterator[Callable]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)
