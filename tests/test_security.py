"""The API's defences: keys, upload caps, zip bombs, quiet errors, request ids."""

from __future__ import annotations

import hmac
import io
import shutil
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.types import Message
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from offerletters.api import create_app
from offerletters.config import Settings
from offerletters.errors import (
    ConfigError,
    LedgerError,
    LedgerUnavailable,
    QueueUnavailable,
    RosterUnreadable,
)
from offerletters.roster import RosterOptions, open_roster
from tests import rosters
from tests.conftest import REPO, MakeSettings
from tests.rosters import Sheet, candidate, roster
from tests.support.services import (
    AUTH,
    TEST_API_KEY,
    free_port,
    in_process_api,
    run_cli,
    settings_env,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ROSTER = rosters.xlsx(
    Sheet("Roster", roster(candidate("Ana Lima", "ana@example.com"), candidate()))
)
PROTECTED_ROUTES = [
    ("POST", "/send-emails"),
    ("POST", "/preview"),
    ("GET", "/batches/0123456789abcdef"),
    ("GET", "/batches/0123456789abcdef/letters"),
    ("POST", "/batches/0123456789abcdef/retry"),
]
# Something an error message must never carry to the caller.
PRIVATE = "hunter2-smtp-password"
SERVER_PATH = "/srv/offerletters/private/ledger.db"


def upload(data: bytes = ROSTER) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("roster.xlsx", data, XLSX)}


@pytest.fixture
async def anonymous(smtp_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in embedded mode, called without an API key."""
    async with in_process_api(smtp_settings, api_key=None) as api:
        yield api


@pytest.fixture
async def client(smtp_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in embedded mode, called with the test key."""
    async with in_process_api(smtp_settings) as api:
        yield api


class AsgiCall:
    """One request made straight into the ASGI app, recording what it read."""

    def __init__(self, body: bytes = b"") -> None:
        self.reads = 0
        self.messages: list[Message] = []
        self._body = body

    async def receive(self) -> Message:
        self.reads += 1
        return {"type": "http.request", "body": self._body, "more_body": False}

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    async def run(
        self, app: FastAPI, method: str, path: str, headers: dict[str, str]
    ) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("api", 80),
        }
        await app(scope, self.receive, self.send)


# --- API keys ------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED_ROUTES)
async def test_every_protected_route_refuses_a_request_without_a_key(
    anonymous: httpx.AsyncClient, method: str, path: str
) -> None:
    """No key is 401 with a Bearer challenge and a detail that says what to send."""
    response = await anonymous.request(method, path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), PROTECTED_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TEST_API_KEY}x", f"Basic {TEST_API_KEY}", "Bearer ", TEST_API_KEY],
)
async def test_a_wrong_key_or_scheme_is_refused(
    anonymous: httpx.AsyncClient, method: str, path: str, authorization: str
) -> None:
    """A wrong key, another scheme or a bare key is 401, never served."""
    response = await anonymous.request(
        method, path, headers={"Authorization": authorization}
    )

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert set(response.json()) == {"detail"}


async def test_any_configured_key_is_accepted(
    smtp_settings: Settings,
) -> None:
    """With two keys configured, the second one works too (keys can be rotated)."""
    second = "second-key-fedcba9876543210"
    settings = smtp_settings.model_copy(
        update={"api_keys": SecretStr(f"{TEST_API_KEY}, {second}")}
    )

    async with in_process_api(settings, api_key=second) as api:
        response = await api.get("/batches/0123456789abcdef")

    assert response.status_code == 404


async def test_keys_are_compared_in_constant_time_against_every_key(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every key is compared with hmac.compare_digest, even after a match."""
    keys = [TEST_API_KEY, "another-key-0000000000000", "a-third-key-111111111111"]
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    async with in_process_api(make_settings(api_keys=",".join(keys))) as api:
        response = await api.get("/batches/0123456789abcdef")

    assert response.status_code == 404
    assert len(compared) == len(keys)
    assert all(isinstance(a, bytes) and len(a) == len(b) for a, b in compared)


async def test_an_unauthorised_upload_is_refused_before_its_body_is_read(
    make_settings: MakeSettings,
) -> None:
    """A 401 is sent without reading one byte of the body or running the route."""
    app = create_app(make_settings())
    call = AsgiCall(body=ROSTER)

    with capture_logs() as events:
        await call.run(
            app,
            "POST",
            "/send-emails",
            {"Host": "api", "Content-Length": str(len(ROSTER))},
        )

    assert call.status == 401
    assert call.reads == 0
    names = [e["event"] for e in events]
    assert "api_key_refused" in names
    assert "batch_received" not in names
    assert TEST_API_KEY not in repr(events)


async def test_probes_metrics_and_docs_answer_without_a_key(
    anonymous: httpx.AsyncClient,
) -> None:
    """/healthz, /readyz, /metrics and the OpenAPI page need no key."""
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        response = await anonymous.get(path)
        assert response.status_code == 200, path
    metrics = await anonymous.get("/metrics")

    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text


async def test_the_openapi_page_documents_the_bearer_scheme(
    anonymous: httpx.AsyncClient,
) -> None:
    """The schema has an HTTP bearer scheme, required on protected routes only."""
    schema = (await anonymous.get("/openapi.json")).json()

    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiKey"]["description"],
    }
    paths = schema["paths"]
    for method, path in PROTECTED_ROUTES:
        template = path.replace("0123456789abcdef", "{batch_id}")
        operation = paths[template][method.lower()]
        assert operation["security"] == [{"apiKey": []}], path
        assert "401" in operation["responses"], path
    assert "security" not in paths["/healthz"]["get"]
    assert "security" not in paths["/readyz"]["get"]


@pytest.mark.parametrize("api_keys", [None, "", " , ,"])
def test_without_keys_or_dev_mode_the_api_refuses_to_start(
    make_settings: MakeSettings, api_keys: str | None
) -> None:
    """No usable key and dev mode off is a ConfigError naming both settings."""
    with pytest.raises(ConfigError) as refused:
        create_app(make_settings(api_keys=api_keys))

    assert "OFFERLETTERS_API_KEYS" in str(refused.value)
    assert "OFFERLETTERS_DEV_MODE" in str(refused.value)


def test_a_short_key_is_refused_without_echoing_it(make_settings: MakeSettings) -> None:
    """A guessable key stops start-up; the message gives its place, not the key."""
    with pytest.raises(ConfigError) as refused:
        create_app(make_settings(api_keys=f"{TEST_API_KEY},hunter2"))

    assert "key 2 of OFFERLETTERS_API_KEYS" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_api_command_without_keys_exits_2_and_names_the_fix(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """`offerletters api` with no keys and no dev mode prints both settings, exits 2."""
    env = settings_env(make_settings(api_keys=None))
    assert "OFFERLETTERS_API_KEYS" not in env

    result = run_cli(["api", "--port", str(free_port())], env, tmp_path)

    assert result.returncode == 2, result.stderr
    assert "OFFERLETTERS_API_KEYS" in result.stderr
    assert "OFFERLETTERS_DEV_MODE" in result.stderr
    assert "Traceback" not in result.stderr


async def test_dev_mode_turns_keys_off_and_says_so_loudly(
    smtp_settings: Settings,
) -> None:
    """Dev mode serves without a key, warns `auth_disabled` and marks each answer."""
    settings = smtp_settings.model_copy(update={"dev_mode": True, "api_keys": None})

    with capture_logs() as events:
        async with in_process_api(settings, api_key=None) as api:
            response = await api.get("/batches/0123456789abcdef")

    assert response.status_code == 404
    assert response.headers["X-Offerletters-Dev-Mode"] == "true"
    warnings = [e for e in events if e["event"] == "auth_disabled"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"


async def test_answers_outside_dev_mode_carry_no_dev_mode_mark(
    client: httpx.AsyncClient,
) -> None:
    """Only dev mode marks its answers."""
    response = await client.get("/healthz")

    assert "X-Offerletters-Dev-Mode" not in response.headers


# --- upload caps ---------------------------------------------------------------


async def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(
    make_settings: MakeSettings,
) -> None:
    """A Content-Length over the cap is a JSON 413 before a byte is read."""
    app = create_app(make_settings(max_upload_bytes=1_000_000))
    call = AsgiCall(body=b"x" * 10)

    await call.run(
        app,
        "POST",
        "/send-emails",
        {"Host": "api", "Content-Length": str(10**12), **AUTH},
    )

    assert call.status == 413
    assert call.reads == 0
    assert b'"detail"' in call.body
    assert b"1,000,000 bytes" in call.body


async def test_a_chunked_upload_is_cut_off_once_it_passes_the_cap(
    smtp_settings: Settings,
) -> None:
    """A body without a length is counted as it streams and refused past the cap."""
    settings = smtp_settings.model_copy(update={"max_upload_bytes": 100_000})
    chunk = b"0" * 64 * 1024
    total_chunks = 160  # 10 MB, far past the cap
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            b"--cut\r\nContent-Disposition: form-data;"
            b' name="file"; filename="roster.xlsx"\r\n\r\n'
        )
        for _ in range(total_chunks):
            sent += 1
            yield chunk

    async with in_process_api(settings) as api:
        response = await api.post(
            "/send-emails",
            content=body(),
            headers={"Content-Type": "multipart/form-data; boundary=cut"},
        )

    assert response.status_code == 413
    assert "100,000 bytes" in response.json()["detail"]
    assert sent < 10, f"read {sent} chunks of {total_chunks}"


async def test_a_roster_file_over_the_cap_is_refused(smtp_settings: Settings) -> None:
    """A file over the byte cap, within the multipart allowance, is still a 413."""
    settings = smtp_settings.model_copy(update={"max_upload_bytes": 1000})

    async with in_process_api(settings) as api:
        response = await api.post("/send-emails", files=upload(ROSTER))

    assert len(ROSTER) > 1000
    assert response.status_code == 413
    assert response.json() == {
        "detail": "the roster has more than 1,000 bytes; split it"
    }


async def test_a_roster_over_the_row_cap_is_refused(smtp_settings: Settings) -> None:
    """More candidate rows than OFFERLETTERS_MAX_ROWS is a 413 naming the cap."""
    settings = smtp_settings.model_copy(update={"max_rows": 1})

    async with in_process_api(settings) as api:
        response = await api.post("/send-emails", files=upload(ROSTER))

    assert response.status_code == 413
    assert response.json() == {"detail": "the roster has more than 1 rows; split it"}


# --- decompression bombs -------------------------------------------------------


def with_zeros(workbook: bytes, size: int) -> bytes:
    """The workbook with one more part: `size` zero bytes, deflated to nearly none."""
    buffer = io.BytesIO(workbook)
    with (
        zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("xl/media/zeros.bin", "w", force_zip64=True) as part,
    ):
        block = bytes(1024 * 1024)
        for _ in range(size // len(block)):
            part.write(block)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A valid roster carrying 64 MiB of zeros in well under a megabyte."""
    return with_zeros(ROSTER, 64 * 1024 * 1024)


@pytest.mark.parametrize("route", ["/send-emails", "/preview"])
async def test_a_decompression_bomb_is_refused_before_it_is_unpacked(
    client: httpx.AsyncClient, bomb: bytes, route: str
) -> None:
    """A small workbook that would unpack hundreds of times larger is a 400."""
    response = await client.post(route, files=upload(bomb))

    assert len(bomb) < 1_000_000
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "unpacks to 67.1 MB" in detail
    assert "decompression bomb" in detail


def test_a_workbook_unpacking_past_the_size_cap_is_refused() -> None:
    """Past max_unpacked_bytes a workbook is refused, whatever its packing ratio."""
    workbook = with_zeros(ROSTER, 4 * 1024 * 1024)

    with pytest.raises(RosterUnreadable, match=r"unpacks to 4\.2 MB, more than"):
        open_roster(workbook, RosterOptions(max_unpacked_bytes=1_000_000))
    assert open_roster(workbook).sheet == "Roster"


# --- errors stay quiet ---------------------------------------------------------


@pytest.fixture
def failing_app(make_settings: MakeSettings) -> Callable[[BaseException], FastAPI]:
    """An app with one extra route, /boom, that raises the given error."""

    def build(error: BaseException) -> FastAPI:
        app = create_app(make_settings())

        @app.get("/boom")
        async def boom() -> None:
            raise error

        return app

    return build


async def call(app: FastAPI, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        return await api.get(path, **kwargs)


async def test_an_unexpected_error_is_a_bare_500_with_the_request_id(
    failing_app: Callable[[BaseException], FastAPI],
) -> None:
    """A crash answers only 'internal error' and the id; the log has the trace."""
    app = failing_app(RuntimeError(f"password {PRIVATE} in {SERVER_PATH}"))

    with capture_logs() as events:
        response = await call(app, "/boom", headers=AUTH)

    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    assert response.json() == {"detail": "internal error", "request_id": request_id}
    failed = [e for e in events if e["event"] == "request_failed"]
    assert len(failed) == 1
    assert failed[0]["exc_info"]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (
            LedgerUnavailable(f"the ledger database sqlite:///{SERVER_PATH} is down"),
            503,
        ),
        (
            QueueUnavailable(f"Kafka at kafka.internal:9092 is not usable: {PRIVATE}"),
            503,
        ),
        (LedgerError(f"the ledger database {SERVER_PATH} refused: {PRIVATE}"), 500),
        (ConfigError(f"OFFERLETTERS_SMTP_PASSWORD={PRIVATE} is wrong"), 500),
    ],
)
async def test_our_own_server_side_errors_do_not_leak_their_message(
    failing_app: Callable[[BaseException], FastAPI],
    error: BaseException,
    status: int,
) -> None:
    """Ledger, queue and other server-side errors answer in general words."""
    app = failing_app(error)

    response = await call(app, "/boom", headers=AUTH)

    assert response.status_code == status
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    for leak in (PRIVATE, SERVER_PATH, "kafka.internal", "Traceback"):
        assert leak not in response.text


async def test_a_template_problem_does_not_name_the_server_folder(
    smtp_settings: Settings, tmp_path: Path
) -> None:
    """A template needing a missing column is a 422 naming it, not the folder."""
    templates = tmp_path / "server-templates"
    shutil.copytree(REPO / "templates", templates)
    with (templates / "letter.txt").open("a", encoding="utf-8") as letter:
        letter.write("\nYour manager: {{ hiring_manager }}\n")
    settings = smtp_settings.model_copy(update={"templates_dir": templates})

    async with in_process_api(settings) as api:
        response = await api.post("/send-emails", files=upload())

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "hiring_manager" in detail
    assert str(tmp_path) not in detail


async def test_a_bad_parameter_is_named_without_echoing_its_value(
    client: httpx.AsyncClient,
) -> None:
    """A 422 for a wrong query value says which and why, not what was sent."""
    response = await client.get(
        "/batches/0123456789abcdef/letters", params={"limit": PRIVATE}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]
    assert PRIVATE not in response.text


# --- request ids and the access log --------------------------------------------


async def test_a_sane_request_id_is_kept_and_logged_once_per_request(
    client: httpx.AsyncClient,
) -> None:
    """X-Request-ID comes back as sent and names the one `request_done` line."""
    with capture_logs() as events:
        response = await client.get(
            "/batches/0123456789abcdef/letters",
            params={"state": "failed", "offset": 7},
            headers={"X-Request-ID": "req-42.abc"},
        )

    assert response.headers["X-Request-ID"] == "req-42.abc"
    done = [e for e in events if e["event"] == "request_done"]
    assert len(done) == 1
    assert done[0] == {
        "event": "request_done",
        "log_level": "info",
        "request_id": "req-42.abc",
        "method": "GET",
        "path": "/batches/0123456789abcdef/letters",
        "status": 404,
        "duration_ms": done[0]["duration_ms"],
    }
    assert "failed" not in repr(done)


@pytest.mark.parametrize(
    "given", ["has spaces in it", "x" * 300, "é-unicode", "", "-leading-dash"]
)
async def test_an_unsafe_request_id_is_replaced_by_our_own(
    client: httpx.AsyncClient, given: str
) -> None:
    """A request id that is too long or not plain is not trusted into logs."""
    response = await client.get("/healthz", headers={b"X-Request-ID": given.encode()})

    returned = response.headers["X-Request-ID"]
    assert returned != given
    assert len(returned) == 32


async def test_log_lines_written_while_serving_carry_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    """Events the routes log (batch_received) carry the request's id."""
    with capture_logs(processors=[merge_contextvars]) as events:
        response = await client.post(
            "/preview", files=upload(), headers={"X-Request-ID": "preview-1"}
        )

    assert response.status_code == 200
    received = [e for e in events if e["event"] == "batch_received"]
    assert received
    assert all(e["request_id"] == "preview-1" for e in received)
