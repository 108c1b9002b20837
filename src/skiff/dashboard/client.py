"""The admin API as the dashboard sees it: called in-process, as the signed-in caller.

The dashboard holds no data and no authority of its own. Every page is built from
admin API answers fetched with the caller's own token (the cookie's value sent as
``Authorization: Bearer``), so the API's guard authenticates it exactly as it does
the CLI's calls (bootstrap token, ``skf_`` service tokens, OIDC) and the API's roles
decide what the caller may see and do: there is no second way in.
"""

from __future__ import annotations

from typing import Any

import httpx

from skiff.errors import SkiffError, Unauthorized

API = "/_skiff/api"


class AdminClient:
    """One long-lived client over an ASGI transport (no socket, no second auth)."""

    def __init__(self, admin: Any) -> None:
        # trust_env=False: no proxy from the environment may sit between the
        # dashboard and the API it calls in-process
        self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=admin),
                                       base_url="http://skiff.internal", trust_env=False,
                                       timeout=60)

    async def call(self, token: str, method: str, path: str, *,
                   params: dict | None = None, json: Any = None) -> Any:
        """The JSON answer of ``method path`` for the caller with ``token``; an error
        answer of the API becomes the same SkiffError (status, code, message)."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        resp = await self._http.request(method, API + path, params=params, json=json,
                                        headers=headers)
        if resp.status_code >= 400:
            raise _error(resp)
        return resp.json()

    async def get(self, token: str, path: str, **params: Any) -> Any:
        return await self.call(token, "GET", path, params=params or None)

    async def aclose(self) -> None:
        await self._http.aclose()


def _error(resp: httpx.Response) -> SkiffError:
    try:
        err = resp.json()["error"]
        message, code = str(err["message"]), str(err["code"])
    except (ValueError, KeyError, TypeError):
        message, code = f"the admin API answered {resp.status_code}", "api_error"
    if resp.status_code == 401:
        return Unauthorized(message, code=code)
    return SkiffError(message, code=code, status=resp.status_code)
