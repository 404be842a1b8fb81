"""The API key goes into one request header and nowhere else, whatever a server sends back.

A distinctive canary key runs every command against the sandbox and against a hostile server
that echoes the request headers into every message and field it returns; then every file the
commands wrote and every line they printed is searched for the key, and for any piece of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import pydoc
import socket
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

import batch
from batch import logs
from batch.cli import main
from batch.config import Secret, load_settings, read_api_key
from batch.errors import CatalogError, ConfigError
from batch.follow.download import _shown
from batch.joggai.client import JoggClient
from batch.joggai.lookup import Voice, render
from batch.sandbox import SandboxConfig, running_sandbox
from batch.secret import masked_url
from batch.storage import parse_location
from batch.store.backend import DatabaseURL
from tests.helpers import simple_rows, write_catalog

CANARY = "jb-canary-Q7xZ2mVt9LpR4kWs"
# Any 8 characters in a row of the key's random part count as a leak.
PIECES = [CANARY[i : i + 8] for i in range(len("jb-canary-"), len(CANARY) - 7)]
TERMINAL_TITLE = "\x1b]0;pwned\x07"


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [piece for piece in PIECES if piece.encode() in data]


# --- the Secret type and the key file ---------------------------------------------------------


def test_secret_never_formats_as_the_key() -> None:
    """str, repr, %s, f-strings, format specs and json all hide the key; reveal() gives it."""
    secret = Secret(CANARY)
    shown = [
        str(secret),
        repr(secret),
        "%s" % secret,  # noqa: UP031 - the old style is what logging uses
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        "{}".format(secret),  # noqa: UP032
        json.dumps({"key": secret}, default=str),
        str([secret]),
        str({"config": (secret,)}),
    ]
    assert not any(leaks(text) for text in shown), shown
    assert not isinstance(secret, str)
    with pytest.raises(TypeError):
        json.dumps(secret)
    assert secret.reveal() == CANARY
    assert secret == Secret(CANARY)
    assert secret != Secret("other")


def test_the_library_help_shows_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`help(batch.configure)` in a notebook prints every signature's defaults: a default of
    `os.environ` would print the whole environment, the key with it."""
    monkeypatch.setenv("JOGG_API_KEY", CANARY)
    helped = [
        pydoc.render_doc(getattr(batch, name), renderer=pydoc.TextDoc())
        for name in batch.__all__
        if callable(getattr(batch, name))
    ]
    assert "configure(" in "\n".join(helped)
    assert not [text for text in helped if any(piece in text for piece in PIECES)]


def test_a_logged_secret_shows_stars(caplog: pytest.LogCaptureFixture) -> None:
    """A secret passed to a log call by mistake prints as ***."""
    with caplog.at_level(logging.INFO):
        logging.getLogger("batch.test").info("key is %s", Secret(CANARY))
    assert caplog.messages == ["key is ***"]


def test_key_file_with_a_comment_line_uses_the_first_key_line(tmp_path: Path) -> None:
    """Blank and `#` lines are skipped; the line after the key (a comment) is never sent."""
    key_file = tmp_path / "key"
    key_file.write_text(f"# production key, rotate in March\n\n  {CANARY}  \n# added by ops\n")
    settings = load_settings(None, {"api.key_file": str(key_file)})
    assert read_api_key(settings, {}).reveal() == CANARY


def test_a_key_pasted_as_the_key_file_is_not_shown_and_an_empty_key_file_is_named(
    tmp_path: Path,
) -> None:
    """The key itself written as `api.key_file` (there is no `api.key`) cannot be read as a
    file: the message says so without showing it. A key file of blank and comment lines is
    named as the file that holds no key."""
    pasted = load_settings(None, {"api.key_file": CANARY})
    with pytest.raises(ConfigError) as caught:
        read_api_key(pasted, {})
    assert CANARY not in str(caught.value)
    assert "is it the key itself?" in str(caught.value)
    key_file = tmp_path / "jogg.key"
    key_file.write_text("# production key, to paste below\n\n")
    with pytest.raises(ConfigError, match=rf"^api.key_file {key_file}: holds no key"):
        read_api_key(load_settings(None, {"api.key_file": str(key_file)}), {})


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        (f'api = "{CANARY}"', "api is not a table; write its settings under a [api] line"),
        (f'defaults = "{CANARY}"', "defaults is not a table; write its settings under a"),
        (f'[api]\nkey_file = ["{CANARY}"]', "'api.key_file' = (not shown): Input should be"),
        (f'[api]\nbase_url = ["{CANARY}"]', "'api.base_url' = (not shown): Input should be"),
    ],
)
def test_a_key_pasted_in_the_wrong_place_of_a_config_file_is_not_shown(
    tmp_path: Path, toml: str, says: str
) -> None:
    """A config file of only `api = "sk-..."` (or the key as a list) is refused, and the
    message, which cron logs, does not show the value: it may be the key."""
    config = tmp_path / "jogg.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert CANARY not in str(caught.value)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (f"{CANARY}\x1b[2J", "control"),
        (f"{CANARY}\u00e9", "non-ASCII"),
        (f"{CANARY} trailing-word", "a space"),
        (f"{CANARY}\x7f", "control"),
    ],
)
def test_a_key_with_control_or_non_ascii_characters_is_refused_without_echo(
    tmp_path: Path, text: str, what: str
) -> None:
    """The error names the source and the position, never the key."""
    key_file = tmp_path / "key"
    key_file.write_text(text + "\n")
    settings = load_settings(None, {"api.key_file": str(key_file)})
    for env in ({}, {"JOGG_API_KEY": text}):
        with pytest.raises(ConfigError, match=what) as caught:
            read_api_key(settings, env)
        assert not leaks(str(caught.value))
        assert f"position {len(CANARY) + 1}" in str(caught.value)


# --- the client ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://api.jogg.ai", "http://10.0.0.5:8000", "http://example.test", "ftp://x"]
)
def test_a_non_https_base_url_is_refused_except_loopback(url: str) -> None:
    """The key would cross the network in clear: refused before any request."""
    with pytest.raises(ConfigError, match="http"):
        JoggClient(url, Secret(CANARY))


@pytest.mark.parametrize(
    "url", ["https://api.jogg.ai", "http://127.0.0.1:8787", "http://localhost:1", "http://[::1]:9"]
)
def test_https_and_loopback_base_urls_are_accepted(url: str) -> None:
    """The real API and a local sandbox both work."""
    assert JoggClient(url, Secret(CANARY)).base_url == url


def test_a_socks_proxy_without_its_package_is_a_config_error_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ALL_PROXY=socks5://user:pass@host (a tunnelled CI machine) and httpx without socksio:
    an ImportError's traceback and exit 1 (rows failed). A ConfigError saying what to install,
    the proxy and its password not shown. (socksio is in no extra of the lock.)"""
    monkeypatch.setenv("ALL_PROXY", "socks5://bob:hunter2@127.0.0.1:1080")
    with pytest.raises(ConfigError) as caught:
        JoggClient("https://api.jogg.ai", Secret(CANARY))
    assert "pip install 'httpx[socks]'" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:99999", "has port 99999; a port is 1 to 65535"),
        ("https://api.jogg.ai:0", "has port 0; a port is 1 to 65535"),
        (f"https://{CANARY}@api.jogg.ai", "holds the API key; leave it out"),
        ("https://team:hunter2@api.jogg.ai", "holds a user name or password before its host"),
        (f"http://127.0.0.1:8787/{CANARY}", "holds the API key; leave it out"),
        (f"https://api.jogg.ai/v2?key={CANARY}", "holds the API key; leave it out"),
        ("https://api.jogg.ai/?api_key=hunter2", "'https://api.jogg.ai/?***' holds a query"),
        ("https://api.jogg.ai/#token=hunter2", "holds a query or a fragment"),
    ],
)
def test_a_base_url_with_a_port_out_of_range_or_credentials_is_refused(url: str, says: str) -> None:
    """A port no socket takes was a traceback (OverflowError) and exit 1; credentials in the
    URL were kept in the look-ups' cache, and a token in a query (another key's) printed in
    a cron log. All are a config error (exit 2) saying which, the key never shown."""
    with pytest.raises(ConfigError) as caught:
        JoggClient(url, Secret(CANARY))
    assert says in str(caught.value)
    assert not leaks(str(caught.value))
    assert "hunter2" not in str(caught.value)  # a password in the URL is not repeated either


def test_a_loopback_api_is_reached_past_a_proxy_the_environment_names(
    sandbox_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and ALL_PROXY would take plain-http requests to a loopback API, the key in
    their header, to the proxy's host: they are not used for a loopback base URL."""
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen()
    proxy.setblocking(False)
    address = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, address)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def go() -> Any:
        async with JoggClient(sandbox_url, "sk-sandbox") as client:
            return await client.whoami()

    try:
        assert asyncio.run(go()).kind == "ok"
        with pytest.raises(BlockingIOError):
            proxy.accept()  # nobody came
    finally:
        proxy.close()


def test_configure_refuses_a_base_url_holding_the_key_before_a_config_holds_it(
    tmp_path: Path,
) -> None:
    """The library's `configure` refuses it at once: a RunConfig's repr would show it, and
    a host logging httpx at INFO would log it with every request."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    overrides = batch.Overrides(base_url=f"http://127.0.0.1:8787/{CANARY}")
    with pytest.raises(ConfigError) as caught:
        batch.configure(catalog, overrides, env={"JOGG_API_KEY": CANARY})
    assert "holds the API key" in str(caught.value)
    assert not leaks(str(caught.value))


def _echo_transport(body: Any, status: int = 200) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        echo = f"you sent x-api-key: {request.headers['x-api-key']}"
        content = body(echo) if callable(body) else body
        return httpx.Response(status, content=content)

    return httpx.MockTransport(answer)


def _call(transport: httpx.MockTransport) -> Any:
    async def go() -> Any:
        async with JoggClient("https://api.jogg.ai", CANARY, transport=transport) as client:
            return await client.get_product_video("v1")

    return asyncio.run(go())


def test_the_key_is_scrubbed_from_every_field_of_an_answer() -> None:
    """An echo inside `data` (a status `error`, a URL, a nested list, a key name) is scrubbed."""
    outcome = _call(
        _echo_transport(
            lambda echo: json.dumps(
                {
                    "code": 0,
                    "msg": echo,
                    "data": {
                        "status": "failed",
                        "error": {"code": 1, "message": echo},
                        "video_url": f"https://cdn/{CANARY}.mp4",
                        "list": [[echo]],
                        CANARY: "key as a name",
                    },
                }
            ).encode()
        )
    )
    assert outcome.kind == "ok"
    assert not leaks(repr(outcome)), outcome
    assert outcome.data["error"]["message"] == "you sent x-api-key: ***"


@pytest.mark.parametrize(
    ("key", "echoes"),
    [
        (CANARY, [CANARY.upper(), CANARY.replace("-", "%2d"), CANARY[:12], CANARY[-13:]]),
        ("sk-sandbox", ["sk-sandbox", "SK-SANDBOX", "sk%2Dsandbox", "Sk-SandBox"]),
    ],
)
def test_the_key_is_masked_in_any_case_percent_encoded_or_cut(key: str, echoes: list[str]) -> None:
    """Echoes of the key upper-cased, URL-encoded or cut to 12 characters are masked in the
    message and the data; the rest of the text, shorter runs of the key included, is kept."""
    url = "http://127.0.0.1/_sandbox/media/v1.mp4"

    def answer(request: httpx.Request) -> httpx.Response:
        said = "Parameter error: avatar_id is required; " + " ".join(echoes)
        data = {"echo": echoes, "video_url": url}
        content = json.dumps({"code": 40000, "msg": said, "data": data})
        return httpx.Response(200, content=content.encode())

    async def go() -> Any:
        async with JoggClient(
            "https://api.jogg.ai", key, transport=httpx.MockTransport(answer)
        ) as client:
            return await client.create_video({})

    outcome = asyncio.run(go())
    assert outcome.message == "Parameter error: avatar_id is required; *** *** *** ***"
    assert outcome.data == {"echo": ["***"] * 4, "video_url": url}


def test_the_key_escaped_as_html_character_references_is_masked() -> None:
    """A gateway's error page escapes what it echoes (`&#115;&#107;...`, or `&#x73;` in hex,
    or one character of it): that spelling is masked too, the page's other references kept."""
    decimal = "".join(f"&#{ord(char)};" for char in CANARY)
    hexadecimal = "".join(f"&#x{ord(char):X};" for char in CANARY)
    mixed = CANARY[:5] + f"&#{ord(CANARY[5])};" + CANARY[6:]
    text = f"<p>key {decimal}, {hexadecimal}, {mixed} &amp; &#115;</p>"
    assert Secret(CANARY).scrub(text) == "<p>key ***, ***, *** &amp; &#115;</p>"


def test_a_non_json_body_cannot_leak_part_of_the_key_in_its_preview() -> None:
    """The preview of a broken body is cut at 80 bytes; the key straddling the cut is scrubbed."""
    outcome = _call(_echo_transport(("x" * 60 + CANARY).encode(), status=502))
    assert outcome.kind == "unknown"
    assert "bytes" in outcome.message
    assert not leaks(outcome.message), outcome.message


# --- what people read ---------------------------------------------------------------------------


@pytest.mark.parametrize("verbosity", [0, 1, 2])
def test_other_libraries_log_only_warnings_whatever_the_verbosity(
    verbosity: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """botocore logs a signed request's session token at DEBUG: `-v` shows jogg-batch's own
    detail, and other libraries' records only from warnings up."""
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        logs.configure(verbosity)
        logging.getLogger("botocore.auth").debug("X-Amz-Security-Token: %s", CANARY)
        logging.getLogger("s3fs").info("Found credentials for %s", CANARY)
        logging.getLogger("batch.runner").debug("our detail")
        logging.getLogger("botocore.endpoint").warning("a retry")
    finally:
        logging.getLogger().handlers[:], level = saved
        logging.getLogger().setLevel(level)
    printed = capsys.readouterr().err
    assert not any(piece in printed for piece in PIECES)
    assert ("our detail" in printed) == (verbosity > 0)
    assert "a retry" in printed


def test_text_log_lines_escape_control_characters() -> None:
    """A server message cannot start a forged line or retitle the terminal."""
    formatter = logs.TextFormatter("%(levelname)s %(message)s")
    forged = f"x\n12:00:00 INFO    all good{TERMINAL_TITLE}"
    record = logging.makeLogRecord({"msg": "failed: %s", "args": (forged,), "levelname": "INFO"})
    line = formatter.format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert "\x07" not in line
    assert line == "INFO failed: x\\n12:00:00 INFO    all good\\x1b]0;pwned\\x07"


def test_json_log_lines_stay_one_line() -> None:
    """JSON escaping keeps a hostile message inside its field."""
    record = logging.makeLogRecord({"msg": f"a\nb{TERMINAL_TITLE}", "levelname": "INFO"})
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    assert "\x1b" not in line
    assert json.loads(line)["message"] == f"a\nb{TERMINAL_TITLE}"


def test_lookup_csv_neutralises_formulas_and_table_escapes_controls() -> None:
    """`lookup --format csv` quotes formula lead-ins; the table shows escapes, not their effects."""
    voices = [
        Voice('=HYPERLINK("http://x")', "+cmd", "@SUM(1)", "-1"),
        Voice("v2", f"name{TERMINAL_TITLE}", None, None),
    ]
    csv_lines = render(voices, "csv").splitlines()
    assert csv_lines[1] == '"\'=HYPERLINK(""http://x"")",\'+cmd,\'@SUM(1),\'-1'
    table = render(voices, "table")
    assert "\x1b" not in table
    assert "name\\x1b]0;pwned\\x07" in table


# --- the canary: every command, two key sources, two servers ----------------------------------


class _Echo(BaseHTTPRequestHandler):
    """A JoggAI look-alike that returns the request's headers in every string it can."""

    calls = 0

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        headers = "; ".join(f"{name}: {value}" for name, value in self.headers.items())
        echo = f"echo {headers}{TERMINAL_TITLE}\n00:00:00 INFO    forged line"
        path = self.path.split("?")[0]
        type(self).calls += 1
        status, body = 200, {"code": 0, "msg": echo, "data": {"echo": echo}}
        data: dict[str, Any] = body["data"]  # type: ignore[assignment]
        if path.startswith("/media/"):
            self._send(200, echo.encode(), "video/mp4")
            return
        if path == "/v2/user/remaining_quota":
            self._send(500, ("x" * 70 + headers).encode(), "text/plain")
            return
        if path == "/v2/user/whoami":
            data.update(username=echo, email=echo)
        elif path.startswith("/v2/avatars"):
            data["avatars"] = [{"id": 127, "name": f"=cmd|{echo}", "aspect_ratio": 1}]
        elif path == "/v2/voices":
            voice = {"voice_id": "en-US-ChristopherNeural", "name": echo, "language": "english"}
            data.update(voices=[voice], has_more=False)
        elif path == "/v2/musics":
            data["music"] = [{"id": 1, "name": echo}]
        elif path == "/v2/visual_styles":
            data["visual_styles"] = [{"name": f"+{echo}", "id": 1}]
        elif path == "/v2/create_video_from_product":
            if type(self).calls % 2:
                data["video_id"] = f"mv{type(self).calls}"
            else:
                body["code"] = 40000
        elif path.startswith("/v2/product_video/"):
            video_id = path.rsplit("/", 1)[1]
            host = self.headers["host"]
            data.update(
                id=video_id,
                status=("completed", "failed")[type(self).calls % 2],
                video_url=f"http://{host}/media/{video_id}.mp4?k={headers}",
                cover_url=f"http://{host}/media/{video_id}.png",
                error={"code": 1, "message": echo},
            )
        elif path == "/v2/product_videos":
            data.update(videos=[], total=0)
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, content: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


@pytest.fixture
def echo_server() -> Iterator[str]:
    _Echo.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def canary_sandbox() -> Iterator[str]:
    with running_sandbox(
        SandboxConfig(api_keys=(CANARY,), rate_limit=None, render_seconds=0.0)
    ) as url:
        yield url


def _commands(work: Path, url: str) -> list[list[str]]:
    catalog = write_catalog(work / "catalog.csv", simple_rows(4))
    results = work / "out" / "catalog.results.csv"
    sending = ["--base-url", url, "--results", str(results)]
    return [
        ["validate", str(catalog), "--online", "--base-url", url],
        ["plan", str(catalog)],
        ["run", str(catalog), *sending, "--dry-run"],
        ["run", str(catalog), *sending, "--offline", "--summary-json", str(work / "s1.json")],
        ["run", str(catalog), *sending, "--force", "--summary-json", str(work / "s2.json")],
        ["status", str(results), "--base-url", url],
        ["retry", str(results), "--base-url", url, "--retry-permanent"],
        ["report", str(results), "--format", "html", "--output", str(work / "report.html")],
        ["report", str(results), "--format", "json"],
        ["download", str(results), "--dest", str(work / "videos"), "--covers"],
        ["lookup", "avatars", "--base-url", url, "--format", "csv"],
        ["lookup", "voices", "--base-url", url, "--refresh"],
        ["lookup", "music", "--base-url", url, "--format", "json"],
        ["lookup", "styles", "--base-url", url, "--aspect-ratio", "portrait"],
    ]


@pytest.mark.parametrize("server", ["sandbox", "echo"])
@pytest.mark.parametrize("key_source", ["environment", "key file"])
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_canary_key_is_nowhere_after_every_command(
    tmp_path: Path,
    private_cache: Path,
    request: pytest.FixtureRequest,
    server: str,
    key_source: str,
    log_format: str,
) -> None:
    """Every command at -vv: no file written and no line printed holds any piece of the key."""
    url = request.getfixturevalue("canary_sandbox" if server == "sandbox" else "echo_server")
    work = tmp_path / "work"
    work.mkdir()
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    key_file = secret_dir / "key"
    key_file.write_text(f"{CANARY}\n# the production key; rotated by ops, do not share\n")
    config = work / "jogg.toml"
    settings = '[retry]\nmax_attempts = 2\nbase_delay = 0\n[api]\nrate_limit = "6000/min"\n'
    if key_source == "key file":
        settings += f'key_file = "{key_file}"\n'
    config.write_text(settings)
    env = {"JOGG_API_KEY": CANARY if key_source == "environment" else "", "JOGG_BASE_URL": ""}

    printed: list[str] = []
    for command in _commands(work, url):
        args = [*command, "-vv", "--log-format", log_format]
        if command[0] not in ("report", "download"):
            args += ["--config", str(config)]
        result = CliRunner().invoke(main, args, env=env)
        printed += [result.stdout, result.stderr]
        if result.exc_info and not isinstance(result.exc_info[1], SystemExit):
            printed.append("".join(traceback.format_exception(*result.exc_info)))
            pytest.fail(f"{command[0]} raised:\n{printed[-1]}")
        assert result.exit_code in (0, 1), (command, result.exit_code, result.stderr[-2000:])

    written = [path for path in (*work.rglob("*"), *private_cache.rglob("*")) if path.is_file()]
    assert len(written) > 10, written  # results, state, summaries, report, videos, cache
    found = {str(path): leaks(path.read_bytes()) for path in written}
    assert not any(found.values()), found
    assert not any(leaks(text) for text in printed), [t for t in printed if leaks(t)]
    if server == "echo":
        assert _Echo.calls > 10  # the hostile answers were really read
    # No echo started a line of its own or reached the terminal as an escape.
    errors = "".join(printed[1::2])
    assert "\n00:00:00 INFO    forged line" not in errors
    assert "\x1b" not in errors


def test_a_video_id_sharing_a_short_run_with_the_key_is_kept_whole() -> None:
    """A key of hex digits and a hex video id may share a run of characters by chance: the id
    must reach the state intact (a masked id could never be looked up or downloaded)."""
    key = "0123456789abcdef" * 2
    video_id = "ffff" + key[3:14] + "0000"  # 11 characters of the key, no more
    content = json.dumps({"code": 0, "msg": "ok", "data": {"video_id": video_id}}).encode()

    async def go() -> Any:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=content))
        async with JoggClient("https://api.jogg.ai", key, transport=transport) as client:
            return await client.create_video({})

    assert asyncio.run(go()).data == {"video_id": video_id}


@pytest.mark.parametrize("before", ["", "k", "apikey:", "Bearer-ish x", "user:"])
def test_the_key_base64_encoded_inside_longer_text_is_masked(before: str) -> None:
    """`user:key` in base64 (a Basic header echoed), at each of the three alignments a prefix
    gives, and the key in hex: no run of the encoding that is the key's alone survives."""
    key = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    token = base64.b64encode(f"{before}{key}".encode()).decode()
    scrubbed = Secret(key).scrub(f"Authorization: Basic {token}; hex {key.encode().hex()}")
    assert "***" in scrubbed
    assert token not in scrubbed
    assert key.encode().hex() not in scrubbed
    # Left: the prefix's own characters, and at most a group of four at each end of the key.
    left = scrubbed.split("Basic ")[1].split(";")[0].replace("***", "")
    assert len(left) <= 4 * (len(before) // 3 + 2)


def test_a_utf16_body_shows_no_text_in_its_preview() -> None:
    """A non-JSON body in UTF-16 (a NUL between letters) would carry the key past scrubbing:
    its preview says what it is, not what it says."""
    outcome = _call(_echo_transport(f"error for key {CANARY}".encode("utf-16-le"), status=502))
    assert outcome.kind == "unknown"
    assert outcome.message == "the body is not JSON (80 bytes, not UTF-8 text)"
    assert "k\x00" not in outcome.message


def test_the_key_in_base64_is_masked() -> None:
    """A server echoing the key base64-encoded (as a Basic header carries it) leaks it whole."""
    key = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    b64 = base64.b64encode(key.encode()).decode()
    urlsafe = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    said = f"bad token {b64}; again {urlsafe}"
    assert Secret(key).scrub(said) == "bad token ***==; again ***"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Invalid port: 'jb-ca'", "Invalid port: '***'"),
        ("https://api.jogg.ai:Q7x/v2", "https://api.jogg.ai:***/v2"),
        (f"https://{CANARY.upper()}@api.jogg.ai", "https://***@api.jogg.ai"),
        ("https://api.jogg.ai:Q7/v2", "https://api.jogg.ai:Q7/v2"),  # 2 characters: kept
    ],
)
def test_configuration_text_is_scrubbed_of_short_pieces_of_the_key(text: str, shown: str) -> None:
    """Text built from configuration (the base URL, httpx's errors about it) loses any run of
    three or more of the key's characters; answers keep the 12-character rule."""
    key = Secret(CANARY)
    assert key.scrub_config(text) == shown
    assert key.scrub("Invalid port: 'jb-ca'") == "Invalid port: 'jb-ca'"


@pytest.mark.parametrize(
    "command",
    [
        ["run", "catalog.csv", "--state", "s.db"],
        ["status", "--state", "s.db"],
        ["lookup", "avatars"],
        ["download", "catalog.results.csv", "--dest", "videos"],
    ],
)
@pytest.mark.parametrize("piece", ["jb-ca", "Q7xZ"])
def test_a_base_url_holding_a_piece_of_the_key_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], piece: str
) -> None:
    """A base URL built from part of the key (`Invalid port: 'jb-ca'` from httpx) is a usage
    error (exit 2) whose message, and any traceback, holds no piece of the key."""
    monkeypatch.chdir(tmp_path)
    write_catalog(tmp_path / "catalog.csv", simple_rows(1))
    (tmp_path / "catalog.results.csv").write_text(
        "row,status,video_id,video_status,video_url\n1,submitted,v1,completed,\n"
    )
    (tmp_path / "s.db").write_bytes(b"")
    env = {"JOGG_API_KEY": CANARY, "JOGG_BASE_URL": f"https://api.jogg.ai:{piece}"}
    result = CliRunner().invoke(main, command, env=env)
    shown = result.stdout + result.stderr
    if result.exc_info and not isinstance(result.exc_info[1], SystemExit):
        shown += "".join(traceback.format_exception(*result.exc_info))
    assert piece not in shown, shown
    assert result.exit_code == 2, shown
    assert "base URL 'https://api.jogg.ai:***' is not a valid URL (Invalid port: '***')" in shown


# --- passwords in URLs, and the key in the wrong setting ---------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://jogg:Hash#hunter2@db:5432/jogg", "postgresql://jogg:***@db:5432/jogg"),
        ("postgresql://jogg:Qm?hunter2@db/jogg?sslmode=require", "postgresql://jogg:***@db/jogg?sslmode=require"),
        ("postgresql://jogg:Wz/hunter2@db/jogg", "postgresql://jogg:***@db/jogg"),
        ("postgres://db/jogg?user=jogg&password=hunter2", "postgres://db/jogg?user=jogg&password=***"),
    ],
)  # fmt: skip
def test_a_database_password_holding_a_url_delimiter_is_never_shown(url: str, shown: str) -> None:
    """libpq takes a password holding `#` or `?`, where a URL parser ends the user's part: the
    password was printed whole in the summary, `--json` and `state info`."""
    assert str(DatabaseURL(url)) == shown
    assert "hunter2" not in repr(DatabaseURL(url))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("bob:hunter2@127.0.0.1:3128", "***@127.0.0.1:3128"),
        ("http://bob:hun/ter2@proxy:3128", "http://***@proxy:3128"),
        ("https://bob:hun#ter2@api.jogg.ai/v2", "https://***@api.jogg.ai/v2"),
        ("s3://AKIA:hun/ter2@bucket/in/c.csv", "s3://***@bucket/in/c.csv"),
        ("https://api.jogg.ai/v2?token=hunter2", "https://api.jogg.ai/v2?***"),
    ],
)
def test_a_url_shown_in_a_message_hides_its_credentials(url: str, shown: str) -> None:
    """A proxy variable without a scheme, and a password holding `/`, `?` or `#`, were shown
    whole in messages (a URL parser ends the password there)."""
    assert masked_url(url) == shown


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        ("http://bob:hunter2/x@127.0.0.1:3128", "is not a URL httpx can use"),
        ("ftp://bob:hunter2@127.0.0.1:21", "is not a URL httpx can use"),
        ("http://bob:hunter2@127.0.0.1:99999", "(http://***@127.0.0.1:99999) has port 99999"),
    ],
)
def test_a_proxy_httpx_cannot_use_is_a_config_error_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: str, says: str
) -> None:
    """A proxy URL whose password holds `/` (read as its port), another scheme or a port past
    65535 was a traceback and exit 1, the password in httpx's message."""
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    done = CliRunner().invoke(
        main,
        ["run", str(catalog), "--base-url", "https://api.jogg.ai",
         "--state", str(tmp_path / "s.db")],
        env={"JOGG_API_KEY": CANARY},
    )  # fmt: skip
    assert done.exit_code == 2, done.output
    assert says in done.stderr
    assert "hunter2" not in done.output
    assert "Traceback" not in done.output


def test_a_base_url_whose_password_holds_a_slash_is_not_quoted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx read the password's first part as the port, and the message quoted it."""
    with pytest.raises(ConfigError) as caught:
        JoggClient("https://user:hunter2/zz@api.jogg.ai", Secret(CANARY))
    assert str(caught.value) == "base URL 'https://***@api.jogg.ai' is not a valid URL"


def test_a_store_url_with_a_secret_key_holding_a_slash_is_refused_unshown() -> None:
    """An S3 URL `s3://KEY:SECRET@bucket/...` is refused; a secret key holding `/` (about half
    do) got past the check, and the store's error printed it."""
    with pytest.raises(CatalogError) as caught:
        parse_location("s3://AKIALEAK:hun/ter2@cats/in/cat.csv")
    assert "a URL holding a user name or password is not taken" in str(caught.value)
    assert "ter2" not in str(caught.value)
    assert "AKIALEAK" not in str(caught.value)


def test_a_keyword_connection_string_is_refused_not_made_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--state 'host=db user=jogg password=...'` (libpq's keyword form) became a SQLite file
    named after the password, off the shared ledger; the name went to the summary."""
    monkeypatch.chdir(tmp_path)
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    dsn = "host=127.0.0.1 port=5432 user=jogg password=hunter2 dbname=jogg"
    done = CliRunner().invoke(
        main, ["run", str(catalog), "--sandbox", "--state", dsn], env={"JOGG_API_KEY": CANARY}
    )
    assert done.exit_code == 2, done.output
    assert "PostgreSQL's key=value words (not shown" in done.stderr
    assert "hunter2" not in done.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.csv"]


def test_a_download_message_hides_a_redirects_credentials_and_path_token() -> None:
    """A redirect's `user:password@`, fragment and a CDN token in its path were written to the
    results' download_error and the log (only the query was dropped)."""
    assert _shown("http://bob:hunter2@example.com/v.mp4?X-Amz-Signature=s") == (
        "'http://***@example.com/v.mp4?***'"
    )
    assert _shown("https://cdn.example.com/hdnts=exp~hmac=hunter2/v.mp4#t=hunter2") == (
        "'https://cdn.example.com/***/v.mp4#***'"
    )


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ('[defaults]\nvoice_id = "{key}"\n', "defaults.voice_id holds the API key (not shown)"),
        ('[api]\nrate_limit = "{key}"\n', "api.rate_limit = '***' is not a rate"),
    ],
)
def test_the_key_pasted_in_another_setting_is_refused_unshown(
    tmp_path: Path, setting: str, says: str
) -> None:
    """The key pasted as a voice id was sent as one, and written to the results file's message
    and the ledger; in a setting that failed its check, quoted in the message."""
    config = tmp_path / "c.toml"
    config.write_text(setting.format(key=CANARY))
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    done = CliRunner().invoke(
        main,
        ["run", str(catalog), "--config", str(config), "--base-url", "http://127.0.0.1:9",
         "--state", str(tmp_path / "s.db")],
        env={"JOGG_API_KEY": CANARY},
    )  # fmt: skip
    assert done.exit_code == 2, done.output
    assert says in done.stderr
    assert not leaks(done.output)


def test_a_malformed_key_in_the_environment_stops_only_the_commands_that_send_it(
    tmp_path: Path,
) -> None:
    """The key is looked for in the settings by every command; one JOGG_API_KEY refuses (a
    space in it) stopped `validate`, which never sends it."""
    catalog = write_catalog(tmp_path / "c.csv", simple_rows(1))
    done = CliRunner().invoke(
        main, ["validate", str(catalog)], env={"JOGG_API_KEY": "bad key with space"}
    )
    assert done.exit_code == 0, done.output
