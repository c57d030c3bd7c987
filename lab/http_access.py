"""Who may do what through the rigs' bluesky-httpservers: two accounts, two API keys.

- ``operator`` (bluesky-httpserver's ``user`` role): queue, start, pause, resume, stop
  and open or close the worker; the RE Manager then checks each plan against the
  ``primary`` user group. Its key is ``DIR/keys/http-api-key``.
- ``observer`` (the ``observer`` role): status, queue, history and console only; every
  write is refused by the httpserver ("Not enough permissions"). Its key is
  ``DIR/keys/http-observer-key``, for dashboards and people who watch.

The accounts log in with passwords kept in ``DIR/keys`` (``http-operator-password``,
``http-observer-password``: a key for another client is made with them, through the
httpserver's ``/api/auth/apikey``). Every rig's httpserver shares one account database
(``DIR/http-auth.db``) and one token secret, so a key works on every rig. Keys are made
on the first ``ssb lab up`` and kept; one the database no longer knows is made anew.
"""

from __future__ import annotations

from typing import Any

import httpx

from .layout import Layout

ROLES = {"operator": "user", "observer": "observer"}  # account -> bluesky-httpserver role
KEY_FILES = {"operator": "http-api-key", "observer": "http-observer-key"}
PROVIDER = "lab"
KEY_LIFETIME = 10 * 365 * 86400  # s: a lab's key lasts as long as its directory


def password(layout: Layout, account: str) -> str:
    return layout.key(f"http-{account}-password")


def config_sections(layout: Layout) -> dict[str, Any]:
    """The authentication, database and access sections of an httpserver's config."""
    accounts = {account: password(layout, account) for account in ROLES}
    return {
        "authentication": {
            "allow_anonymous_access": False,
            "providers": [
                {
                    "provider": PROVIDER,
                    "authenticator": "bluesky_httpserver.authenticators:DictionaryAuthenticator",
                    "args": {"users_to_passwords": accounts},
                }
            ],
            "secret_keys": [layout.key("http-token-secret")],
        },
        "database": {"uri": f"sqlite:///{layout.directory / 'http-auth.db'}"},
        "api_access": {
            "policy": "bluesky_httpserver.authorization:DictionaryAPIAccessControl",
            "args": {"users": {account: {"roles": [role]} for account, role in ROLES.items()}},
        },
        "resource_access": {
            "policy": "bluesky_httpserver.authorization:DefaultResourceAccessControl",
            "args": {"default_group": "primary"},
        },
    }


def _token(uri: str, account: str, secret: str) -> str:
    reply = httpx.post(
        f"{uri}/api/auth/provider/{PROVIDER}/token",
        data={"username": account, "password": secret},
        timeout=5,
    )
    reply.raise_for_status()
    return reply.json()["access_token"]


def can_log_in(uri: str, layout: Layout) -> bool:
    """The httpserver at ``uri`` is up and knows the lab's accounts."""
    try:
        return bool(_token(uri, "observer", password(layout, "observer")))
    except httpx.HTTPError:
        return False


def key_works(uri: str, key: str) -> bool:
    reply = httpx.get(f"{uri}/api/auth/whoami", headers={"Authorization": f"Apikey {key}"},
                      timeout=5)  # fmt: skip
    return reply.status_code == 200


def ensure_keys(uri: str, layout: Layout) -> None:
    """Each account's API key in ``DIR/keys``: kept if the server knows it, else made."""
    for account, name in KEY_FILES.items():
        path = layout.keys / name
        if path.exists() and key_works(uri, path.read_text().strip()):
            continue
        token = _token(uri, account, password(layout, account))
        reply = httpx.post(
            f"{uri}/api/auth/apikey",
            json={"expires_in": KEY_LIFETIME, "scopes": ["inherit"], "note": f"ssb lab {account}"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        reply.raise_for_status()
        layout.write_key(name, reply.json()["secret"])
