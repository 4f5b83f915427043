"""Webhook tokens and their 2FA (``producer.tokens.routes``): a real API on 127.0.0.1 with
the private Redis. TOTP codes come from the enrolled secret; time moves by an injected
clock, never by sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from test_api import Client, problem

from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.keys import Keys
from producer.secretbox import new_key
from producer.settings import SettingsError
from producer.tokens import totp
from producer.tokens.context import CLOCK, Clock
from producer.tokens.registry import MAX_TOKENS, USAGE_HISTORY
from producer.tokens.twofactor import MAX_FAILURES, SESSION_S

KEY = "tokens-key-0123456789abcdef"
START = 1_750_000_000.0  # a multiple of 30 s: each test starts at a step boundary


class FakeClock:
    """Seconds since the epoch that only move when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    """A started API (API_KEYS set), its clock, and calls made with the admin key."""

    client: Client
    clock: FakeClock

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        session: str | None = None,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {KEY}", **kwargs.pop("headers", {})}
        if session:
            headers["X-Cliq-2FA-Session"] = session
        if body is not None:
            kwargs["json"] = body
        return await self.client.request(method, path, headers=headers, **kwargs)


class ApiFactory(Protocol):
    async def __call__(self, **env: str) -> Api: ...


@asynccontextmanager
async def api_factory_for(redis_url: str) -> AsyncIterator[ApiFactory]:
    """Starts APIs (API_KEYS set, an injected clock) on 127.0.0.1; stops them after."""
    clients: list[Client] = []

    async def factory(**env: str) -> Api:
        settings = ApiSettings.from_env({"REDIS_URL": redis_url, "API_KEYS": KEY, **env})
        app = create_app(settings)
        clock = FakeClock()
        injected: Clock = clock
        app[CLOCK] = injected
        client: Client = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return Api(client, clock)

    try:
        yield factory
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def api_factory(redis_url: str) -> AsyncIterator[ApiFactory]:
    async with api_factory_for(redis_url) as factory:
        yield factory


@pytest.fixture
async def api(api_factory: ApiFactory) -> Api:
    return await api_factory()


async def ok(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    text = await response.text()
    assert response.status == status, text
    return json.loads(text) if text else None


@dataclass
class User:
    """A user enrolled in 2FA, with an open session."""

    api: Api
    id: str
    secret: str
    session: str
    workspace_id: str = "ws_1"
    tokens: list[dict[str, Any]] = field(default_factory=list)

    def code(self) -> str:
        return totp.code_at(self.secret, self.api.clock())

    async def verify(self) -> str:
        """A new session from the code of a step not used before (the clock moves 30 s)."""
        self.api.clock.advance(totp.STEP_S)
        body = await ok(
            await self.api.call("POST", f"/v1/users/{self.id}/2fa/verify", {"code": self.code()})
        )
        self.session = body["session"]
        return self.session

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """A call under /v1/users/<id> with the session."""
        return await self.api.call(
            method, f"/v1/users/{self.id}{path}", body, session=self.session, **kw
        )

    async def new_token(self, name: str = "ci") -> dict[str, Any]:
        created: dict[str, Any] = await ok(await self.call("POST", "/tokens", {"name": name}), 201)
        return created


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
SECRET_FIELD = re.compile(r'id="totp-secret" class="secret" value="([A-Z2-7]+)"')


@dataclass
class Portal:
    """A user's own dashboard session, opened by their portal link (an HTTP client)."""

    api: Api
    user_id: str
    browser: aiohttp.ClientSession
    csrf: str = ""

    async def post(self, path: str, status: int = 200, **form: str) -> str:
        """Send a form of the user's screens (``path`` under /ui/tokens/<id>); the page."""
        url = self.api.client.make_url(f"/ui/tokens/{self.user_id}{path}")
        async with self.browser.post(url, data={"csrf": self.csrf, **form}) as response:
            page = await response.text()
            assert response.status == status, page
        return page

    async def enrol(self) -> str:
        """Set up TOTP (or replace it, within a 2FA session): the secret shown."""
        page = await self.post("/2fa/enroll")
        assert '<svg xmlns="http://www.w3.org/2000/svg"' in page  # the QR code
        found = SECRET_FIELD.search(page)
        assert found is not None, page
        return found[1]


@asynccontextmanager
async def portal_of(api: Api, user_id: str) -> AsyncIterator[Portal]:
    """The user's portal session: their link, made with the operator key, opened once."""
    link = await ok(await api.call("POST", f"/v1/users/{user_id}/portal-links"), 201)
    # unsafe: keep the cookies of an IP address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        # Its path on this server (the URL's base may be PUBLIC_URL's).
        path = urlsplit(link["url"]).path
        async with browser.get(api.client.make_url(path)) as response:
            page = await response.text()
            assert response.status == 200, page
        found = CSRF_FIELD.search(page)
        assert found is not None, page
        yield Portal(api, user_id, browser, found[1])


async def enrolled_user(api: Api, user_id: str = "user_1", workspace_id: str = "ws_1") -> User:
    """Create a user, who enrols TOTP in their own portal session; confirming it (over
    the API, with the first code) opens a 2FA session."""
    await ok(await api.call("PUT", f"/v1/users/{user_id}", {"workspace_id": workspace_id}), 201)
    async with portal_of(api, user_id) as portal:
        secret = await portal.enrol()
    code = totp.code_at(secret, api.clock())
    confirmed = await ok(await api.call("POST", f"/v1/users/{user_id}/2fa/confirm", {"code": code}))
    return User(api, user_id, secret, confirmed["session"], workspace_id)


# ---------------------------------------------------------------- users and 2FA


async def test_enrolment_shows_the_secret_to_the_user_once_and_confirmation_opens_a_session(
    api: Api,
) -> None:
    await ok(await api.call("PUT", "/v1/users/user_1", {"workspace_id": "ws_1"}), 201)
    # No API key reads a TOTP secret, the operator's included.
    refused = await api.call("POST", "/v1/users/user_1/2fa/enroll")
    assert (
        "/v1/users/user_1/portal-links"
        in (await problem(refused, 403, "enrol-in-portal"))["detail"]
    )
    async with portal_of(api, "user_1") as portal:
        secret = await portal.enrol()
    enrolment = {"secret": secret}
    user = await ok(await api.call("GET", "/v1/users/user_1"))
    assert user["totp_enrolled"] is False  # not before the first code

    wrong = str((int(totp.code_at(enrolment["secret"], api.clock())) + 1) % 10**6).zfill(6)
    await problem(
        await api.call("POST", "/v1/users/user_1/2fa/confirm", {"code": wrong}),
        401,
        "invalid-totp-code",
    )
    code = totp.code_at(enrolment["secret"], api.clock())
    session = await ok(await api.call("POST", "/v1/users/user_1/2fa/confirm", {"code": code}))
    assert session["session"].startswith("tfs_")
    assert session["header"] == "X-Cliq-2FA-Session"
    user = await ok(await api.call("GET", "/v1/users/user_1"))
    assert user["totp_enrolled"] is True
    assert enrolment["secret"] not in json.dumps(user)  # shown at enrolment only


async def test_token_management_needs_a_session_of_that_user(api: Api) -> None:
    alice = await enrolled_user(api, "alice")
    bob = await enrolled_user(api, "bob")
    body = await problem(await api.call("GET", "/v1/users/alice/tokens"), 401, "reauthenticate")
    assert "Re-authenticate" in body["detail"]
    assert "X-Cliq-2FA-Session" in body["detail"]
    await problem(
        await api.call("GET", "/v1/users/alice/tokens", session="tfs_forged"),
        401,
        "reauthenticate",
    )
    await problem(
        await api.call("GET", "/v1/users/alice/tokens", session=bob.session),
        401,
        "reauthenticate",
    )
    listed = await ok(await alice.call("GET", "/tokens"))
    assert listed == {"items": [], "max_tokens": MAX_TOKENS}


async def test_the_session_expires_15_minutes_after_verification(api: Api) -> None:
    user = await enrolled_user(api)
    api.clock.advance(SESSION_S - 1)
    await ok(await user.call("GET", "/tokens"))  # use does not extend it
    api.clock.advance(1)
    body = await problem(await user.call("GET", "/tokens"), 401, "reauthenticate")
    assert "15 minutes" in body["detail"]
    await problem(await user.call("POST", "/tokens", {"name": "x"}), 401, "reauthenticate")

    await user.verify()
    await ok(await user.call("GET", "/tokens"))
    api.clock.advance(SESSION_S)
    await problem(await user.call("GET", "/tokens"), 401, "reauthenticate")


async def test_a_code_is_accepted_once(api: Api) -> None:
    user = await enrolled_user(api)
    api.clock.advance(totp.STEP_S)
    code = user.code()
    first, second = await asyncio.gather(
        *(api.call("POST", "/v1/users/user_1/2fa/verify", {"code": code}) for _ in range(2))
    )
    assert sorted([first.status, second.status]) == [200, 401]
    again = await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": code})
    body = await problem(again, 401, "invalid-totp-code")
    assert "already used" in body["detail"]
    # The previous step's code is within the drift window but older: refused as well.
    earlier = totp.code_at(user.secret, api.clock() - totp.STEP_S)
    await problem(
        await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": earlier}),
        401,
        "invalid-totp-code",
    )
    await user.verify()  # the next step works


async def test_wrong_codes_lock_verification(api: Api) -> None:
    user = await enrolled_user(api)
    api.clock.advance(totp.STEP_S)
    right = user.code()
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(MAX_FAILURES):
        await problem(
            await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": wrong}),
            401,
            "invalid-totp-code",
        )
    body = await problem(
        await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": right}),
        429,
        "totp-locked",
    )
    assert "locked" in body["detail"]


async def test_codes_and_users_are_validated(api: Api) -> None:
    await problem(
        await api.call("POST", "/v1/users/ghost/2fa/verify", {"code": "123456"}),
        404,
        "not-found",
    )
    await ok(await api.call("PUT", "/v1/users/user_1", {"workspace_id": "ws_1"}), 201)
    body = await problem(
        await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": "12345"}),
        422,
        "invalid-fields",
    )
    assert body["errors"][0]["field"] == "code"
    body = await problem(
        await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": "123456"}),
        409,
        "two-factor-state",
    )
    assert "enrol" in body["detail"]
    await problem(
        await api.call("PUT", "/v1/users/user_1", {"workspace_id": "no spaces"}),
        422,
        "invalid-fields",
    )


async def test_re_enrolment_needs_a_session_and_keeps_the_old_secret_until_confirmed(
    api: Api,
) -> None:
    user = await enrolled_user(api)
    async with portal_of(api, "user_1") as portal:
        # Without a 2FA session in the portal: a code first.
        assert "2FA is set up already" in await portal.post("/2fa/enroll")
        api.clock.advance(totp.STEP_S)
        await portal.post("/2fa/verify", code=user.code())
        new = {"secret": await portal.enrol()}
    assert new["secret"] != user.secret
    await user.verify()  # the old secret still works until the new one is confirmed
    api.clock.advance(totp.STEP_S)
    code = totp.code_at(new["secret"], api.clock())
    await ok(await api.call("POST", "/v1/users/user_1/2fa/confirm", {"code": code}))
    api.clock.advance(totp.STEP_S)
    await problem(
        await api.call("POST", "/v1/users/user_1/2fa/verify", {"code": user.code()}),
        401,
        "invalid-totp-code",
    )


async def test_totp_secrets_are_sealed_when_a_key_is_set(
    api_factory: ApiFactory, redis: aioredis.Redis
) -> None:
    api = await api_factory(SECRET_ENCRYPTION_KEY=new_key())
    user = await enrolled_user(api)
    stored = str(await redis.hget(Keys().user(user.id), "s"))
    assert stored.startswith("enc:v1:")
    assert user.secret not in stored
    await user.verify()  # and it still opens


def test_public_url_must_be_an_absolute_http_url() -> None:
    base = {"PUBLIC_URL": "https://hooks.example.com/cliq/"}
    assert ApiSettings.from_env(base).public_url == "https://hooks.example.com/cliq"
    for bad in ("hooks.example.com", "ftp://hooks.example.com", "https://h.example.com/?a=1"):
        with pytest.raises(SettingsError, match="PUBLIC_URL"):
            ApiSettings.from_env({"PUBLIC_URL": bad})


async def test_the_admin_key_still_guards_the_user_routes(api: Api) -> None:
    response = await api.client.put("/v1/users/user_1", json={"workspace_id": "ws_1"})
    await problem(response, 401, "unauthorized")


# ---------------------------------------------------------------- tokens


async def test_a_token_is_shown_once_and_stored_only_as_a_digest(
    api: Api, redis: aioredis.Redis
) -> None:
    user = await enrolled_user(api)
    created = await user.new_token("GitHub alerts")
    value = created["token"]
    token_id, _, secret = value.partition(".")
    assert created["id"] == token_id
    assert created["status"] == "active"
    assert created["invocations"] == 0
    assert created["last_invoked_at"] is None

    listed = await ok(await user.call("GET", "/tokens"))
    assert listed["items"] == [{k: v for k, v in created.items() if k != "token"}]
    got = await ok(await user.call("GET", f"/tokens/{token_id}"))
    assert "token" not in got
    stored = await redis.hgetall(Keys().token(token_id))
    assert stored["h"] == hashlib.sha256(secret.encode()).hexdigest()
    for key in await redis.keys("*"):
        if await redis.type(key) == "hash":
            assert secret not in json.dumps(await redis.hgetall(key)), key


async def test_at_most_five_tokens_and_delete_frees_a_slot(api: Api) -> None:
    user = await enrolled_user(api)
    tokens = [await user.new_token(f"t{n}") for n in range(MAX_TOKENS)]
    body = await problem(
        await user.call("POST", "/tokens", {"name": "sixth"}), 409, "token-limit-reached"
    )
    assert "at most 5" in body["detail"]

    await ok(await user.call("DELETE", f"/tokens/{tokens[0]['id']}"), 204)
    await problem(await user.call("GET", f"/tokens/{tokens[0]['id']}"), 404, "not-found")
    replacement = await user.new_token("replacement")
    names = [t["name"] for t in (await ok(await user.call("GET", "/tokens")))["items"]]
    assert sorted(names) == ["replacement", "t1", "t2", "t3", "t4"]
    assert replacement["id"] != tokens[0]["id"]
    await problem(await user.call("POST", "/tokens", {"name": "sixth"}), 409, "token-limit-reached")


async def test_concurrent_creation_never_exceeds_five(api: Api) -> None:
    user = await enrolled_user(api)
    responses = await asyncio.gather(
        *(user.call("POST", "/tokens", {"name": f"t{n}"}) for n in range(20))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [201] * MAX_TOKENS + [409] * (20 - MAX_TOKENS)
    assert len((await ok(await user.call("GET", "/tokens")))["items"]) == MAX_TOKENS


async def test_the_limit_is_per_user(api: Api) -> None:
    alice = await enrolled_user(api, "alice")
    bob = await enrolled_user(api, "bob")
    for n in range(MAX_TOKENS):
        await alice.new_token(f"a{n}")
    await bob.new_token("b0")
    # Bob cannot see, change or delete Alice's tokens through his own path.
    alices = (await ok(await alice.call("GET", "/tokens")))["items"]
    await problem(await bob.call("DELETE", f"/tokens/{alices[0]['id']}"), 404, "not-found")


async def test_rename_disable_and_enable(api: Api) -> None:
    user = await enrolled_user(api)
    token = await user.new_token("old")
    renamed = await ok(await user.call("PATCH", f"/tokens/{token['id']}", {"name": " new "}))
    assert renamed["name"] == "new"
    disabled = await ok(await user.call("POST", f"/tokens/{token['id']}/disable"))
    assert disabled["status"] == "disabled"
    enabled = await ok(await user.call("POST", f"/tokens/{token['id']}/enable"))
    assert enabled["status"] == "active"
    body = await problem(
        await user.call("PATCH", f"/tokens/{token['id']}", {"name": ""}), 422, "invalid-fields"
    )
    assert body["errors"][0]["field"] == "name"
    await problem(
        await user.call("PATCH", f"/tokens/{token['id']}", {"nam": "x"}), 422, "invalid-fields"
    )
    await problem(await user.call("POST", "/tokens/tok_missing/disable"), 404, "not-found")


# ---------------------------------------------------------------- Get Webhook URL


async def test_webhook_urls_of_every_module(api_factory: ApiFactory) -> None:
    api = await api_factory(PUBLIC_URL="https://hooks.example.com/")
    user = await enrolled_user(api)
    await ok(await user.call("PUT", "/channels/general"), 201)
    await ok(await user.call("PUT", "/bots/deploybot"), 201)
    app = await ok(await user.call("POST", "/apps", {"name": "Sync"}), 201)
    token = await user.new_token()
    path = f"/tokens/{token['id']}/webhook-url"
    base = "https://hooks.example.com/api/v2"
    cases = [
        ("channel", "general", f"{base}/channelsbyname/general/message"),
        ("bot_incoming", "deploybot", f"{base}/bots/deploybot/incoming"),
        ("bot_message", "deploybot", f"{base}/bots/deploybot/message"),
    ]
    for module, name, url in cases:
        template = await ok(await user.call("POST", path, {"module": module, "name": name}))
        assert template == {
            "module": module,
            "name": name,
            "url": f"{url}?zapikey={{zapikey}}",
            "complete": False,
        }
        full = await ok(
            await user.call("POST", path, {"module": module, "name": name, "token": token["token"]})
        )
        assert full["url"] == f"{url}?zapikey={token['token']}"
        assert full["complete"] is True

    ext = f"{base}/applications/{app['id']}/incoming"
    for env in ("sandbox", "marketplace"):
        module = f"extension_{env}"
        template = await ok(await user.call("POST", path, {"module": module, "name": app["id"]}))
        assert template["url"] == f"{ext}?appkey={{appkey}}&zapikey={{zapikey}}"
        appkey = app[f"{env}_appkey"]
        full = await ok(
            await user.call(
                "POST",
                path,
                {"module": module, "name": app["id"], "token": token["token"], "appkey": appkey},
            )
        )
        assert full == {
            "module": module,
            "name": app["id"],
            "url": f"{ext}?appkey={appkey}&zapikey={token['token']}",
            "complete": True,
        }
    # The sandbox key is not the marketplace endpoint's.
    body = await problem(
        await user.call(
            "POST",
            path,
            {"module": "extension_marketplace", "name": app["id"], "appkey": app["sandbox_appkey"]},
        ),
        422,
        "invalid-fields",
    )
    assert body["errors"][0]["field"] == "appkey"


async def test_webhook_url_checks_what_it_is_given(api: Api) -> None:
    user = await enrolled_user(api)
    other = await enrolled_user(api, "other")
    await ok(await other.call("PUT", "/channels/theirs"), 201)
    await ok(await user.call("PUT", "/channels/general"), 201)
    first, second = await user.new_token("a"), await user.new_token("b")
    path = f"/tokens/{first['id']}/webhook-url"
    bad = [
        ({"module": "email", "name": "general"}, "module"),
        ({"module": "channel", "name": "theirs"}, "name"),
        ({"module": "channel", "name": "general", "token": second["token"]}, "token"),
        ({"module": "channel", "name": "general", "token": "tok_x.y"}, "token"),
        ({"module": "channel", "name": "general", "appkey": "sbx_x"}, "appkey"),
    ]
    for request, field_name in bad:
        body = await problem(await user.call("POST", path, request), 422, "invalid-fields")
        assert body["errors"][0]["field"] == field_name, request
    # Without PUBLIC_URL the base is where the caller reached the API.
    url = (await ok(await user.call("POST", path, {"module": "channel", "name": "general"})))["url"]
    assert url.startswith(f"http://127.0.0.1:{api.client.port}/api/v2/channelsbyname/general/")


async def test_names_are_claimed_by_one_user(api: Api) -> None:
    alice = await enrolled_user(api, "alice")
    bob = await enrolled_user(api, "bob")
    await ok(await alice.call("PUT", "/channels/general"), 201)
    await ok(await alice.call("PUT", "/channels/general"), 200)
    body = await problem(await bob.call("PUT", "/channels/general"), 409, "resource-taken")
    assert "another user" in body["detail"]
    await ok(await bob.call("PUT", "/bots/general"), 201)  # another kind, another name space
    user = await ok(await api.call("GET", "/v1/users/alice"))
    assert (user["channels"], user["bots"], user["apps"]) == (["general"], [], [])


def test_keys_of_the_token_system_are_in_the_layout() -> None:
    keys = Keys("p")
    assert keys.token("tok_1") == "p:tok:tok_1"
    assert keys.token_usage("tok_1") == "p:tok:tok_1:use"
    assert keys.user_tokens("u") == "p:usr:u:tok"
    assert USAGE_HISTORY == 100
