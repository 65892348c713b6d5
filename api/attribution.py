"""No impersonation: with login on, a request may attribute an action only to its own user.

One dependency of every /api/v1 route (after the login check) reads the fields that name who
acts (`user`, `rater`, `voter` ... at the top of a JSON body, in a form or in the query) of
every state-changing request: a name other than the logged-in one is refused (403), and a JSON
body's field is filled with the logged-in name, so each route records the real person.
"""

from __future__ import annotations

from fastapi import Request

from core.errors import Forbidden
from core.operations.auth import ANONYMOUS

ATTRIBUTION_FIELDS = frozenset({
    "user", "username", "user_id", "rater", "voter", "author", "owner", "actor",
    "created_by", "requested_by", "promoted_by", "updated_by", "deleted_by",
})
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


async def attributed_to_login(request: Request) -> None:
    user = getattr(request.state, "user", None)  # set by api.login.api_user
    if user is None or request.method not in STATE_CHANGING:
        return
    claims = [(k, v) for k, v in request.query_params.multi_items() if k in ATTRIBUTION_FIELDS]
    kind = request.headers.get("content-type", "")
    body = None
    if kind.startswith("application/json"):
        try:
            body = await request.json()  # cached: the route validates this same object
        except ValueError:
            body = None  # the route answers 400 for it
    elif kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        claims += [(k, v) for k, v in (await request.form()).multi_items()
                   if k in ATTRIBUTION_FIELDS]
    if isinstance(body, dict):
        claims += [(k, body[k]) for k in ATTRIBUTION_FIELDS if k in body]
    for name, value in claims:
        claimed = value.strip() if isinstance(value, str) else value
        if claimed not in (None, "", ANONYMOUS, user):
            raise Forbidden(f"you are logged in as {user!r} and cannot act as {value!r} "
                            f"(field {name!r})")
    if isinstance(body, dict):
        body.update({k: user for k in ATTRIBUTION_FIELDS if k in body})
