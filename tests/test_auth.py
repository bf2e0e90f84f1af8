"""Authentication and authorisation: JWT verification, where tokens may travel,
scopes and case claims, run ownership, tickets, Origin, token expiry, binding."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus

from legalstream.app import create_app
from legalstream.server.auth import ANONYMOUS, Authenticator, AuthError, Principal
from legalstream.server.runner import InsecureBinding, check_binding, is_loopback
from legalstream.server.tickets import MemoryTicketStore, RedisTicketStore
from legalstream.settings import AuthSettings, Settings
from support import ScriptedRunner, collect_run, live_server, recv_json

SECRET = "test-secret-" + "x" * 40
AUD = "legalstream"
ISS = "https://idp.example"
QUERY = {"query": "What was the defendant's response?", "case_id": 1}
REPO = Path(__file__).resolve().parents[1]


def make_token(
    sub: str = "alice",
    cases: list[int] | str = (1,),  # type: ignore[assignment]
    scope: str | None = "query",
    exp_in: float = 300,
    key: str = SECRET,
    alg: str = "HS256",
    headers: dict | None = None,
    **extra,
) -> str:
    claims = {
        "sub": sub,
        "cases": cases if cases == "*" else list(cases),
        "exp": int(time.time() + exp_in),
        "aud": AUD,
        "iss": ISS,
        **extra,
    }
    if scope is not None:
        claims["scope"] = scope
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def jwt_settings(tmp: Path, **auth) -> Settings:
    return Settings(
        rag={"data_dir": tmp / "data", "ingest_sample_on_start": False},
        auth={
            "mode": "jwt",
            "secret": SECRET,
            "audience": AUD,
            "issuer": ISS,
            "leeway_seconds": 0,
            **auth,
        },
        limits={"enabled": False},
        audit={"path": tmp / "audit.jsonl"},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def handshake_status(url: str, **kw) -> int:
    """The HTTP status of a refused handshake (101 if it was accepted)."""
    try:
        async with websockets.connect(url, open_timeout=5, **kw):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# -- unit: token verification -----------------------------------------------


def auth(**kw) -> Authenticator:
    base = {"mode": "jwt", "secret": SECRET, "audience": AUD, "issuer": ISS, "leeway_seconds": 0}
    return Authenticator(AuthSettings(**{**base, **kw}))


def test_hs256_claims_become_a_principal():
    p = auth().verify(make_token(cases=[1, 2], scope="query status"))
    assert p.user == "alice" and p.cases == frozenset({1, 2})
    assert p.scopes == {"query", "status"} and p.expires_at is not None
    assert p.may_query(1) and not p.may_query(3) and not p.is_admin
    star = auth().verify(make_token(cases="*", scope=None, scopes=["admin", "bogus"]))
    assert star.cases is None and star.scopes == {"admin"} and star.has_scope("status")
    default = auth().verify(make_token(scope=None))
    assert default.scopes == {"query"}


@pytest.mark.parametrize(
    "token, reason",
    [
        (lambda: make_token(exp_in=-5), "expired"),
        (lambda: make_token(key="another-secret-" + "y" * 40), "invalid"),
        (lambda: make_token(aud="someone-else"), "invalid"),
        (lambda: make_token(iss="https://evil.example"), "invalid"),
        (lambda: jwt.encode({"sub": "a", "aud": AUD, "iss": ISS}, SECRET), "invalid"),  # no exp
        (lambda: make_token(sub=""), "invalid"),
        (lambda: make_token(cases=["1"]), "cases"),
        (lambda: make_token(cases=[True]), "cases"),
        (lambda: make_token(scope=None, scopes=[1]), "scope"),
        (
            lambda: jwt.encode({"sub": "a", "exp": time.time() + 60}, None, algorithm="none"),
            "algorithm",
        ),
        (lambda: make_token(alg="HS512"), "algorithm"),
        (lambda: "not.a.jwt", "malformed"),
        (lambda: "x" * 10_000, "malformed"),
    ],
)
def test_bad_tokens_are_refused_with_401(token, reason):
    with pytest.raises(AuthError) as err:
        auth().verify(token())
    assert err.value.status == 401
    assert reason in err.value.message


def _rsa_pem() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem.decode()


def test_rs256_public_key_and_no_algorithm_confusion(tmp_path):
    key, pem = _rsa_pem()
    (tmp_path / "pub.pem").write_text(pem)
    a = auth(algorithms=["RS256", "HS256"], public_key_file=tmp_path / "pub.pem")
    assert a.verify(make_token(key=key, alg="RS256")).user == "alice"
    # The classic confusion attack: HS256 "signed" with the public key as secret.
    forged = jwt.api_jws.PyJWS()
    forged._algorithms["HS256"].prepare_key = lambda k: k  # let PyJWT sign with a PEM
    token = forged.encode(
        json.dumps({"sub": "mallory", "exp": time.time() + 60, "aud": AUD, "iss": ISS}).encode(),
        pem.encode(),
        algorithm="HS256",
    )
    with pytest.raises(AuthError):
        a.verify(token)
    # An RS256-only deployment refuses HS256 outright.
    rs_only = auth(algorithms=["RS256"], secret=None, public_key_file=tmp_path / "pub.pem")
    with pytest.raises(AuthError, match="algorithm"):
        rs_only.verify(make_token())


def test_es256_from_jwks_picks_the_key_by_kid(tmp_path):
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("k1", "k2")}
    jwks = {
        "keys": [
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(k.public_key())),
                "kid": kid,
                "alg": "ES256",
            }
            for kid, k in keys.items()
        ]
    }
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    a = auth(algorithms=["ES256"], secret=None, jwks_file=tmp_path / "jwks.json")
    for kid, k in keys.items():
        assert a.verify(make_token(key=k, alg="ES256", headers={"kid": kid})).user == "alice"
    wrong = make_token(key=keys["k1"], alg="ES256", headers={"kid": "k2"})
    with pytest.raises(AuthError):
        a.verify(wrong)
    with pytest.raises(AuthError, match="unknown signing key"):
        a.verify(make_token(key=keys["k1"], alg="ES256", headers={"kid": "k9"}))


def test_misconfiguration_fails_at_startup(tmp_path):
    with pytest.raises(ValueError, match="secret"):
        Authenticator(AuthSettings(mode="jwt", secret=None))
    with pytest.raises(ValueError, match="public_key_file"):
        Authenticator(AuthSettings(mode="jwt", algorithms=["RS256"]))
    with pytest.raises(ValueError, match="none"):
        Authenticator(AuthSettings(mode="jwt", algorithms=["none"], secret=SECRET))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.hex())))
def test_garbage_tokens_only_ever_raise_auth_error(garbage):
    with pytest.raises(AuthError) as err:
        auth().verify(garbage)
    assert err.value.status == 401


async def test_tickets_are_single_use_and_expire():
    store = MemoryTicketStore()
    a = Authenticator(AuthSettings(mode="jwt", secret=SECRET, ticket_ttl_seconds=1), tickets=store)
    principal = Principal("alice", frozenset({1}), frozenset({"query"}), time.time() + 60)
    ticket = await a.issue_ticket(principal)
    assert len(ticket) >= 40
    assert await a.redeem_ticket(ticket) == principal
    with pytest.raises(AuthError):
        await a.redeem_ticket(ticket)  # single use
    stale = await a.issue_ticket(principal)
    await asyncio.sleep(1.1)
    with pytest.raises(AuthError):
        await a.redeem_ticket(stale)
    # A ticket never outlives the token it was issued for.
    expired = await a.issue_ticket(Principal("alice", expires_at=time.time() - 1))
    with pytest.raises(AuthError, match="expired"):
        await a.redeem_ticket(expired)


async def test_redis_tickets_work_across_workers(redis_url):
    url = redis_url
    prefix = f"lstest-{uuid.uuid4().hex[:8]}"
    worker_a, worker_b = RedisTicketStore(url, prefix), RedisTicketStore(url, prefix)
    try:
        ticket = await worker_a.issue({"user": "alice", "cases": [1], "scopes": ["query"]}, 5)
        claims = await worker_b.redeem(ticket)  # redeemed on another worker
        assert claims is not None and claims["user"] == "alice"
        assert await worker_a.redeem(ticket) is None  # GETDEL: gone everywhere
        short = await worker_a.issue({"user": "bob"}, 0.2)
        await asyncio.sleep(0.4)
        assert await worker_b.redeem(short) is None  # expired in Redis
    finally:
        await worker_a.aclose()
        await worker_b.aclose()
    s = Settings(bus={"backend": "redis", "redis_url": url}, auth={"mode": "none"})
    assert isinstance(Authenticator.from_settings(s).tickets, RedisTicketStore)


# -- live: the handshake ------------------------------------------------------


@pytest.fixture(scope="module")
def jwt_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auth")
    s = jwt_settings(tmp, allowed_origins=["https://app.example"], ticket_ttl_seconds=5)
    runner = ScriptedRunner(steps=1, delay=0.001)
    app = create_app(s, runner_factory=lambda svc: runner)
    with live_server(app, s) as srv:
        srv.app = app
        yield srv


async def test_handshake_without_valid_credentials_is_refused_before_accept(jwt_server):
    url = jwt_server.ws
    assert await handshake_status(url) == 401
    assert await handshake_status(url, additional_headers=bearer("garbage")) == 401
    assert await handshake_status(url, additional_headers={"Authorization": "Basic YTpi"}) == 401
    assert await handshake_status(url, additional_headers=bearer(make_token(exp_in=-60))) == 401
    assert await handshake_status(url + "?token=nope") == 401
    assert await handshake_status(url + "?ticket=nope") == 401
    no_query = make_token(scope="status")
    assert await handshake_status(url, additional_headers=bearer(no_query)) == 403
    # Nothing was registered for any of them.
    async with httpx.AsyncClient() as http:
        r = await http.get(
            jwt_server.http + "/ws/status", headers=bearer(make_token(scope="status"))
        )
    assert r.json()["active_connections"] == 0
    # The refusal is an HTTP response with a JSON body and WWW-Authenticate.
    try:
        async with websockets.connect(url):
            pass
    except InvalidStatus as exc:
        assert exc.response.headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(exc.response.body)["code"] == "unauthorized"


async def test_token_in_header_subprotocol_and_query_string(jwt_server):
    token = make_token()
    # 1. Authorization header
    async with websockets.connect(jwt_server.ws, additional_headers=bearer(token)) as ws:
        hello = await recv_json(ws)
        assert hello["metadata"]["user"] == "alice"
        assert ws.subprotocol is None
    # 2. Sec-WebSocket-Protocol (browsers): the app protocol is accepted, never the token
    async with websockets.connect(
        jwt_server.ws, subprotocols=["legalstream.v1", f"bearer.{token}"]
    ) as ws:
        assert ws.subprotocol == "legalstream.v1"
        assert token not in str(ws.response.headers)
        await recv_json(ws)
        await ws.send(json.dumps(QUERY))
        frames = await collect_run(ws)
        assert frames[-1]["type"] == "agent_execution_complete"
    # 3. ?token= (least preferred)
    async with websockets.connect(f"{jwt_server.ws}?token={token}") as ws:
        assert (await recv_json(ws))["metadata"]["user"] == "alice"


async def test_origin_allowlist_is_exact(jwt_server):
    h = bearer(make_token())
    assert (
        await handshake_status(jwt_server.ws, additional_headers=h, origin="https://app.example")
        == 101
    )
    for bad in ("https://evil.example", "https://app.example.evil", "http://app.example", "null"):
        assert await handshake_status(jwt_server.ws, additional_headers=h, origin=bad) == 403
    # Non-browser clients send no Origin at all.
    assert await handshake_status(jwt_server.ws, additional_headers=h) == 101


async def test_tickets_over_http_and_websocket(jwt_server):
    async with httpx.AsyncClient(base_url=jwt_server.http) as http:
        assert (await http.post("/ws/ticket")).status_code == 401
        r = await http.post("/ws/ticket", headers=bearer(make_token(scope="status")))
        assert r.status_code == 403
        r = await http.post("/ws/ticket", headers=bearer(make_token(sub="tina")))
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        body = r.json()
        ticket = body["ticket"]
        assert body["subprotocols"] == ["legalstream.v1", f"ticket.{ticket}"]
        async with websockets.connect(jwt_server.ws, subprotocols=body["subprotocols"]) as ws:
            assert ws.subprotocol == "legalstream.v1"
            assert (await recv_json(ws))["metadata"]["user"] == "tina"
        # Single use.
        assert await handshake_status(jwt_server.ws, subprotocols=body["subprotocols"]) == 401
        second = (await http.post("/ws/ticket", headers=bearer(make_token(sub="tina")))).json()
        async with websockets.connect(f"{jwt_server.ws}?ticket={second['ticket']}") as ws:
            assert (await recv_json(ws))["metadata"]["user"] == "tina"


async def test_forbidden_case_gets_an_error_and_retrieves_nothing(jwt_server):
    svc = jwt_server.app.state.services
    started = svc.runs.started
    async with websockets.connect(
        jwt_server.ws, additional_headers=bearer(make_token(cases=[1]))
    ) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"query": "secrets of case 2", "case_id": 2}))
        frame = await recv_json(ws)
        assert frame["type"] == "error" and frame["code"] == "forbidden_case"
        assert frame["run_id"] is None
        assert svc.runs.started == started  # no run, so no retrieval, for case 2
        # The connection stays usable for the allowed case.
        await ws.send(json.dumps(QUERY))
        assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"
    async with httpx.AsyncClient(base_url=jwt_server.http) as http:
        r = await http.post(
            "/query", json={"query": "q", "case_id": 2}, headers=bearer(make_token())
        )
        assert r.status_code == 403 and r.json()["code"] == "forbidden_case"
        r = await http.get("/cases", headers=bearer(make_token(cases=[])))
        assert r.status_code == 200


async def test_runs_are_visible_only_to_their_owner_or_admin(jwt_server):
    alice, bob, admin = make_token("alice"), make_token("bob"), make_token("root", scope="admin")
    async with websockets.connect(jwt_server.ws, additional_headers=bearer(alice)) as ws:
        await recv_json(ws)
        await ws.send(json.dumps(QUERY))
        frames = await collect_run(ws)
    run_id = frames[0]["run_id"]
    async with websockets.connect(jwt_server.ws, additional_headers=bearer(bob)) as ws:
        await recv_json(ws)
        for kind in ("replay", "resume"):
            await ws.send(json.dumps({"type": kind, "run_id": run_id, "after_seq": 0}))
            frame = await recv_json(ws)
            assert frame["type"] == "error" and frame["code"] == "unknown_run", frame
        await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
        assert (await recv_json(ws))["code"] == "unknown_run"
    async with websockets.connect(jwt_server.ws, additional_headers=bearer(admin)) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "replay", "run_id": run_id}))
        replayed = [await recv_json(ws) for _ in frames]
        assert [f["seq"] for f in replayed] == [f["seq"] for f in frames]
    async with websockets.connect(jwt_server.ws, additional_headers=bearer(alice)) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "replay", "run_id": run_id}))
        # Read them all: a websockets client with unread frames queued stops reading
        # and would only see the server's close frame after its 10 s close timeout.
        assert {(await recv_json(ws))["run_id"] for _ in frames} == {run_id}
    async with httpx.AsyncClient(base_url=jwt_server.http) as http:
        mine = (await http.get("/runs", headers=bearer(alice))).json()["runs"]
        assert run_id in {r["run_id"] for r in mine}
        theirs = (await http.get("/runs", headers=bearer(bob))).json()["runs"]
        assert run_id not in {r["run_id"] for r in theirs}
        assert all(r["user"] == "bob" for r in theirs)
        everyone = (await http.get("/runs", headers=bearer(admin))).json()["runs"]
        assert run_id in {r["run_id"] for r in everyone}
        events = f"/runs/{run_id}/events"
        assert (await http.get(events, headers=bearer(bob))).status_code == 404
        assert (await http.get(events, headers=bearer(alice))).status_code == 200
        assert (await http.get(events, headers=bearer(admin))).status_code == 200
        assert (await http.get(events)).status_code == 401


async def test_status_and_broadcast_need_their_scopes(jwt_server):
    async with httpx.AsyncClient(base_url=jwt_server.http) as http:
        assert (await http.get("/ws/status")).status_code == 401
        assert (await http.get("/ws/status", headers=bearer(make_token()))).status_code == 403
        assert (
            await http.get("/ws/status", headers=bearer(make_token(scope="status")))
        ).status_code == 200
        body = {"message": "maintenance at noon"}
        for scope in ("query", "query status"):
            r = await http.post("/ws/broadcast", json=body, headers=bearer(make_token(scope=scope)))
            assert r.status_code == 403 and r.json()["code"] == "forbidden"
        r = await http.post("/ws/broadcast", json=body, headers=bearer(make_token(scope="admin")))
        assert r.status_code == 200


async def test_token_expiring_mid_connection_closes_with_4401(jwt_server):
    token = make_token(exp_in=1.5)
    async with websockets.connect(jwt_server.ws, additional_headers=bearer(token)) as ws:
        await recv_json(ws)
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        assert ws.close_code == 4401 and ws.close_reason == "token expired"
        assert time.monotonic() - t0 < 4


# -- auth mode none and binding ------------------------------------------------


def test_mode_none_only_on_loopback():
    dev = Settings(auth={"mode": "none"})
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        assert is_loopback(host)
        check_binding(dev, host)
    for host in ("0.0.0.0", "", "::", "10.1.2.3", "example.com"):
        with pytest.raises(InsecureBinding, match="auth mode 'none'"):
            check_binding(dev, host)
    check_binding(Settings(auth={"mode": "jwt", "secret": SECRET}), "0.0.0.0")


async def test_mode_none_is_anonymous_with_app_subprotocol(tmp_settings):
    a = Authenticator(AuthSettings())
    assert a.verify("anything") is ANONYMOUS
    app = create_app(tmp_settings, runner_factory=lambda svc: ScriptedRunner())
    with live_server(app, tmp_settings) as srv:
        async with websockets.connect(srv.ws, subprotocols=["legalstream.v1"]) as ws:
            assert ws.subprotocol == "legalstream.v1"
            assert (await recv_json(ws))["metadata"]["user"] == "anonymous"


def test_cli_refuses_to_expose_auth_none(tmp_path):
    env = {
        **os.environ,
        "LEGALSTREAM_AUTH__MODE": "none",
        "LEGALSTREAM_RAG__DATA_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "legalstream.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "refusing to bind '0.0.0.0' with auth mode 'none'" in proc.stderr


async def test_ticket_from_one_worker_opens_a_socket_on_another(tmp_path, redis_url, redis_prefix):
    """Two app instances on one Redis (as two workers): the ticket travels."""
    s = jwt_settings(tmp_path)
    s.bus = s.bus.model_copy(
        update={"backend": "redis", "redis_url": redis_url, "redis_prefix": redis_prefix}
    )
    runner = ScriptedRunner(steps=1)
    app_a = create_app(s, runner_factory=lambda svc: runner)
    app_b = create_app(s, runner_factory=lambda svc: runner)
    with live_server(app_a, s) as a, live_server(app_b, s) as b:
        async with httpx.AsyncClient() as http:
            r = await http.post(a.http + "/ws/ticket", headers=bearer(make_token("wendy")))
            subprotocols = r.json()["subprotocols"]
        async with websockets.connect(b.ws, subprotocols=subprotocols) as ws:
            assert (await recv_json(ws))["metadata"]["user"] == "wendy"
            await ws.send(json.dumps(QUERY))
            assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"
        assert await handshake_status(a.ws, subprotocols=subprotocols) == 401
        assert await handshake_status(b.ws, subprotocols=subprotocols) == 401
