"""Catalogs and results in an object store: against a real S3 server (moto) on loopback."""

from __future__ import annotations

import collections
import csv
import gzip
import importlib.util
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xlsxwriter
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from batch import runner, storage
from batch.catalog import CatalogOptions, read_passthrough
from batch.cli import main
from batch.config import CliOverrides, Secret, build_run_config
from batch.errors import CatalogError, ConfigError, ExitCode, LocalIOError
from batch.joggai.quota import RateLimit
from batch.sandbox import SandboxConfig, running_sandbox
from batch.storage import ObjectURL, parse_location
from batch.store.results import read_results, state_outcomes, write_results, write_table
from tests.helpers import product_ids, submissions

BUCKET = "catalogs"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on an ephemeral loopback port; the AWS SDK finds it as it would find
    any S3-compatible server: AWS_ENDPOINT_URL and credentials in the environment."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the server's access log
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield endpoint
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[Any]:
    """A fresh bucket through the plain AWS client (the code under test uses s3fs)."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def keys(client: Any) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def csv_bytes(rows: list[dict[str, str]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://bucket/in/catalog.csv", ObjectURL("s3://bucket/in/catalog.csv")),
        ("S3://bucket/c.xlsx", ObjectURL("s3://bucket/c.xlsx")),
        ("gs://bucket/c.csv", ObjectURL("gs://bucket/c.csv")),
        ("az://container/c.csv", ObjectURL("az://container/c.csv")),
        ("file:///data/my%20catalog.csv", Path("/data/my catalog.csv")),
        ("catalog.csv", Path("catalog.csv")),
        ("C:/data/catalog.csv", Path("C:/data/catalog.csv")),
    ],
)
def test_locations_parse_to_a_path_or_an_object_url(text: str, expected: Any) -> None:
    """Store URLs stay URLs; file:// URLs and plain names are local paths."""
    assert parse_location(text) == expected


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("ftp://host/c.csv", r"ftp:// is not a store jogg-batch knows"),
        ("s3://bucket", r"name an object, e.g. s3://bucket/catalog.csv"),
        ("file://server/share/c.csv", r"must name a local file"),
        ("s3://bucket/in/c.csv/", r"ends with '/', as a folder does; name the object without"),
    ],
)
def test_unusable_locations_say_what_to_write(text: str, error: str) -> None:
    """An unknown scheme, a bare bucket or a remote file:// URL: an error saying what to do. An
    object with a stray slash after it was read as the object, and its results (given without
    the slash) written over it: the catalog was lost."""
    with pytest.raises(CatalogError, match=error):
        parse_location(text)


@pytest.mark.parametrize(
    "text",
    [
        "https://b.s3.amazonaws.com/c.csv?X-Amz-Signature=PRESIGNEDSECRET&X-Amz-Security-Token=T",
        "https://user:PASSWORDSECRET@example.com/c.csv",
        "s3://AKIAUSER:PASSWORDSECRET@bucket/c.csv",
        "file://user:PASSWORDSECRET@localhost/tmp/c.csv",
    ],
)
def test_a_location_with_credentials_is_refused_without_repeating_them(text: str) -> None:
    """A signed link or a URL holding a password is refused, and the error (printed, logged,
    shipped) says where without its secret; a store URL never takes credentials in it."""
    with pytest.raises(CatalogError) as refused:
        parse_location(text)
    assert "SECRET" not in str(refused.value)
    assert "***" in str(refused.value)


def test_an_at_sign_in_an_objects_key_is_no_credential() -> None:
    """Only what comes before the bucket is a user name: `@` in a key is the key's."""
    assert parse_location("s3://bucket/team@example/c.csv") == ObjectURL(
        "s3://bucket/team@example/c.csv"
    )


@pytest.mark.parametrize(("url", "package"), [("gs://b/c.csv", "gcsfs"), ("az://c/c.csv", "adlfs")])
def test_a_store_without_its_package_says_what_to_install(url: str, package: str) -> None:
    """Google and Azure stores are optional: the message names the package to install."""
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(CatalogError, match=rf"needs the {package} package; pip install {package}"):
        storage.is_file(parse_location(url))


def test_a_store_client_that_will_not_start_is_a_catalog_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """adlfs raises ValueError when no Azure account is configured: a CatalogError (exit 2,
    before anything is sent) naming the URL and what to give, not a traceback."""
    import fsspec

    def no_account(protocol: str) -> None:
        raise ValueError("Must provide either a connection_string or account_name")

    monkeypatch.setattr(fsspec, "filesystem", no_account)
    with pytest.raises(CatalogError, match=r"az://c/c.csv: cannot reach the store .*credentials"):
        storage.is_file(ObjectURL("az://c/c.csv"))


def test_a_store_stream_cut_mid_read_is_a_catalog_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection cut while an object streams (aiohttp's ClientPayloadError, a reset): a
    CatalogError saying the object could not be read to its end (exit 2 before sending, 7
    after), not the client's traceback naming no file."""

    class CutStream(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 1000:
                raise ConnectionResetError("Response payload is not completed")
            return super().read(min(size or 1000, 1000) if size and size > 0 else 1000)

    class Store:
        def open(self, key: str, mode: str, block_size: int) -> io.BytesIO:
            return CutStream(b"product_id\n" + b"x\n" * 5000)

    monkeypatch.setattr(storage, "_filesystem", lambda location: Store())
    with (
        storage.open_read(ObjectURL("s3://b/c.csv")) as handle,
        pytest.raises(CatalogError, match=r"s3://b/c.csv: could not be read to its end"),
    ):
        collections.deque(iter(lambda: handle.read(4096), b""), maxlen=0)  # to its end


def test_object_url_reads_like_a_path() -> None:
    """name, suffix, stem and with_name work as on a Path: default results go beside it."""
    url = ObjectURL("s3://bucket/in/catalog.xlsx")
    assert (url.name, url.suffix, url.stem) == ("catalog.xlsx", ".xlsx", "catalog")
    assert str(url.with_name("catalog.results.csv")) == "s3://bucket/in/catalog.results.csv"


def test_missing_object_is_a_catalog_error_naming_it(s3: Any) -> None:
    """A key that is not there: the URL is named, nothing else happens."""
    with pytest.raises(CatalogError, match=r"s3://catalogs/nope.csv: no such catalog file"):
        read_passthrough(ObjectURL(f"s3://{BUCKET}/nope.csv"), CatalogOptions())


def test_catalog_object_streams_in_batches(s3: Any) -> None:
    """A CSV object is read in batches of batch_rows, the same tables as a local file gives."""
    rows = [{"product_id": f"P{i}", "length": "30"} for i in range(2500)]
    s3.put_object(Bucket=BUCKET, Key="big.csv", Body=csv_bytes(rows))
    tables = list(
        read_passthrough(ObjectURL(f"s3://{BUCKET}/big.csv"), CatalogOptions(batch_rows=1000))
    )
    assert [t.num_rows for t in tables] == [1000, 1000, 500]
    assert tables[2].column("product_id").to_pylist()[-1] == "P2499"


def test_xlsx_and_parquet_objects_are_read_too(s3: Any, tmp_path: Path) -> None:
    """Every catalog format reads from a store: a workbook and a Parquet file here."""
    book = tmp_path / "c.xlsx"
    workbook = xlsxwriter.Workbook(str(book))
    sheet = workbook.add_worksheet("Products")
    sheet.write_row(0, 0, ["product_id", "avatar_id"])
    sheet.write_row(1, 0, ["P1", 127])
    workbook.close()
    s3.upload_file(str(book), BUCKET, "c.xlsx")
    table = next(read_passthrough(ObjectURL(f"s3://{BUCKET}/c.xlsx"), CatalogOptions()))
    assert table.to_pylist() == [{"product_id": "P1", "avatar_id": "127"}]
    sink = io.BytesIO()
    pq.write_table(pa.table({"product_id": ["Q1"]}), sink)
    s3.put_object(Bucket=BUCKET, Key="c.parquet", Body=sink.getvalue())
    parquet = next(read_passthrough(ObjectURL(f"s3://{BUCKET}/c.parquet"), CatalogOptions()))
    assert parquet.column("product_id").to_pylist() == ["Q1"]


def _outcomes(first: int, last: int) -> pa.Table:
    return state_outcomes([], first, last)


def test_results_object_is_replaced_whole_or_not_at_all(s3: Any) -> None:
    """A write that fails half way leaves the previous results object and no temporary one."""
    destination = ObjectURL(f"s3://{BUCKET}/out/c.results.csv")
    write_results(destination, [pa.table({"sku": ["A", "B"]})], _outcomes)
    before = s3.get_object(Bucket=BUCKET, Key="out/c.results.csv")["Body"].read()

    def failing() -> Iterator[pa.Table]:
        yield pa.table({"sku": ["C"]})
        raise RuntimeError("the catalog went away")

    with pytest.raises(RuntimeError):
        write_results(destination, failing(), _outcomes)
    assert s3.get_object(Bucket=BUCKET, Key="out/c.results.csv")["Body"].read() == before
    assert keys(s3) == ["out/c.results.csv"]
    assert list(read_results(destination)["sku"]) == ["A", "B"]


def test_a_temporary_object_the_credentials_may_not_delete_is_left_with_a_warning(
    s3: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand-off bucket whose policy grants PutObject alone (or a DELETE answered 503): the
    results were written whole, yet the run said the write failed (exit 7, "no further
    requests"), and the check before sending refused the bucket. It is written; the temporary
    objects are left, and named."""
    destination = ObjectURL(f"s3://{BUCKET}/out/c.results.csv")
    store = storage._filesystem(destination)

    def refused(path: str, **_: object) -> None:
        raise PermissionError(f"AccessDenied: DeleteObject {path}")

    monkeypatch.setattr(store, "rm_file", refused)
    with caplog.at_level(logging.WARNING):
        storage.check_writable(destination)
        write_results(destination, [pa.table({"sku": ["A", "B"]})], _outcomes)
    assert list(read_results(destination)["sku"]) == ["A", "B"]
    left = [key for key in keys(s3) if key != "out/c.results.csv"]
    assert sorted(key.rsplit(".", 1)[1] for key in left) == ["probe", "tmp"]
    assert caplog.text.count("could not delete the temporary object") == 2


def test_writing_to_a_missing_bucket_is_a_catalog_error(s3_endpoint: str) -> None:
    """No such bucket: a CatalogError naming the URL, and nothing left behind locally."""
    with pytest.raises(CatalogError, match=r"s3://no-such-bucket/r.csv: no such bucket"):
        write_results(ObjectURL("s3://no-such-bucket/r.csv"), [pa.table({"sku": ["A"]})], _outcomes)


def test_a_results_object_a_command_cannot_write_back_is_exit_7(s3: Any, sandbox_url: str) -> None:
    """`retry` (as `status` and `download`) rewrites a results object after its requests: a
    store refusing it (here, no such bucket) is a LocalIOError (exit 7, what was sent kept),
    not a CatalogError (exit 2, which says nothing was sent)."""
    rows = [{"sku": f"S{i}", "product_id": pid} for i, pid in enumerate(product_ids(2))]
    s3.put_object(Bucket=BUCKET, Key="c.csv", Body=csv_bytes(rows))
    catalog, results = ObjectURL(f"s3://{BUCKET}/c.csv"), ObjectURL(f"s3://{BUCKET}/r.csv")
    cli = CliOverrides(base_url=sandbox_url, rate_limit="none", results=results, max_videos=1)
    assert runner.run(build_run_config(catalog, cli, api_key=Secret("sk-sandbox"))).exit_code == 1
    frame = read_results(results)
    with pytest.raises(LocalIOError, match=r"cannot write the results file: s3://no-such-b"):
        write_table(frame, ObjectURL("s3://no-such-bucket/r.csv"))


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(rate_limit=RateLimit(600, 60.0))) as url:
        yield url


@pytest.mark.parametrize(
    "results_name", ["c.results.csv", "c.results.xlsx", "night?x=1 [a]*.results.csv"]
)
def test_s3_catalog_run_writes_s3_results(s3: Any, sandbox_url: str, results_name: str) -> None:
    """End to end: the catalog is read from S3, every valid row sent once, the results file
    written to S3 (no temporary object left, whatever characters its key holds: `?` `*` `[`
    are no pattern), and a second run sends nothing more."""
    pids = product_ids(4)
    rows = [{"sku": f"SKU{i}", "product_id": pid, "length": "15"} for i, pid in enumerate(pids)]
    rows.append({"sku": "BAD", "product_id": pids[0], "length": "45"})
    s3.put_object(Bucket=BUCKET, Key="in/c.csv", Body=csv_bytes(rows))
    catalog = ObjectURL(f"s3://{BUCKET}/in/c.csv")
    results = ObjectURL(f"s3://{BUCKET}/out/{results_name}")
    cli = CliOverrides(base_url=sandbox_url, rate_limit="600/min", results=results)
    config = replace(
        build_run_config(catalog, cli, api_key=Secret("sk-sandbox")), settle_seconds=0.3
    )

    summary = runner.run(config)

    assert summary.exit_code == ExitCode.ROWS_FAILED  # the invalid row
    assert summary.results == str(results)
    assert keys(s3) == ["in/c.csv", f"out/{results_name}"]
    frame = read_results(results)
    assert list(frame["sku"]) == ["SKU0", "SKU1", "SKU2", "SKU3", "BAD"]
    assert list(frame["status"]) == ["submitted"] * 4 + ["invalid"]
    assert sorted(s["product_id"] for s in submissions(sandbox_url)["submissions"]) == sorted(pids)
    again = runner.run(config)
    assert again.requests_sent == 0
    assert len(submissions(sandbox_url)["submissions"]) == 4


def test_two_stored_catalogs_of_one_name_do_not_share_the_default_results_object(
    s3: Any, sandbox_url: str
) -> None:
    """`in/c.csv` and `in/c.jsonl` in one bucket would both write `in/c.results.csv`, the
    second over the first's rows (a local pair is refused): the second is refused before
    sending, as on disk."""
    pids = product_ids(2)
    s3.put_object(Bucket=BUCKET, Key="in/c.csv", Body=csv_bytes([{"product_id": pids[0]}]))
    s3.put_object(Bucket=BUCKET, Key="in/c.jsonl", Body=f'{{"product_id": "{pids[1]}"}}\n')
    cli = CliOverrides(base_url=sandbox_url, rate_limit="600/min")
    for name in ("c.csv", "c.jsonl"):
        config = build_run_config(
            ObjectURL(f"s3://{BUCKET}/in/{name}"), cli, api_key=Secret("sk-sandbox")
        )
        if name == "c.csv":
            assert runner.run(replace(config, settle_seconds=0.3)).requests_sent == 1
    with pytest.raises(ConfigError, match=r"holds the results of s3://catalogs/in/c\.csv, a"):
        runner.run(replace(config, settle_seconds=0.3))
    assert len(submissions(sandbox_url)["submissions"]) == 1


def test_cli_takes_s3_urls_for_catalog_and_results(
    s3: Any, sandbox_url: str, tmp_path: Path
) -> None:
    """`jogg-batch run s3://... --results s3://...` and `validate s3://...` from the shell."""
    rows = [{"product_id": pid, "length": "15"} for pid in product_ids(2)]
    s3.put_object(Bucket=BUCKET, Key="c.csv", Body=csv_bytes(rows))
    settings = tmp_path / "quick.toml"
    settings.write_text("[run]\nsettle_seconds = 1\n")  # the sandbox lists new videos at once
    result = CliRunner().invoke(
        main,
        ["run", f"s3://{BUCKET}/c.csv", "--results", f"s3://{BUCKET}/r.xlsx",
         "--base-url", sandbox_url, "--rate-limit", "none", "--offline",
         "--config", str(settings)],
        env={"JOGG_API_KEY": "sk-sandbox"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert f"results: s3://{BUCKET}/r.xlsx" in result.stderr
    assert list(read_results(ObjectURL(f"s3://{BUCKET}/r.xlsx"))["status"]) == ["submitted"] * 2
    result = CliRunner().invoke(main, ["validate", f"s3://{BUCKET}/c.csv"])
    assert result.exit_code == 0
    assert result.stderr.strip() == f"s3://{BUCKET}/c.csv: no problems"
    # The hand-offs after a run take the same URL: status rewrites the object, report reads it.
    status = CliRunner().invoke(
        main,
        ["status", f"s3://{BUCKET}/r.xlsx", "--base-url", sandbox_url],
        env={"JOGG_API_KEY": "sk-sandbox"},
    )
    assert status.exit_code in (0, 1), status.stderr
    assert "video_status" in read_results(ObjectURL(f"s3://{BUCKET}/r.xlsx")).columns
    report = CliRunner().invoke(main, ["report", f"s3://{BUCKET}/r.xlsx", "--format", "json"])
    assert report.exit_code == 0, report.stderr
    assert '"submitted": 2' in report.stdout
    fetched = CliRunner().invoke(
        main, ["download", f"s3://{BUCKET}/r.xlsx", "--dest", str(tmp_path / "videos")]
    )
    assert fetched.exit_code == 2
    assert f"s3://{BUCKET}/r.xlsx: download records each file's local_path" in fetched.stderr


def test_unwritable_results_bucket_is_refused_before_anything_is_sent(
    s3: Any, sandbox_url: str
) -> None:
    """Results in a bucket that does not exist: exit 2 before the first POST, naming the URL."""
    s3.put_object(Bucket=BUCKET, Key="c.csv", Body=csv_bytes([{"product_id": product_ids(1)[0]}]))
    result = CliRunner().invoke(
        main,
        ["run", f"s3://{BUCKET}/c.csv", "--results", "s3://no-such-bucket/r.csv",
         "--base-url", sandbox_url, "--offline"],
        env={"JOGG_API_KEY": "sk-sandbox"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--results s3://no-such-bucket/r.csv: no such bucket; check its name" in result.stderr
    assert submissions(sandbox_url)["submissions"] == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'product_id,title\nP1,a\nP2,"never closed\nP3,c\n',
         "line 3 (row 2): a cell opens with a quote that never closes"),
        (b"product_id,title\nP1,a\x00b\n", "line 2 (row 1): column 'title' holds a NUL byte"),
        (b"product_id,title\nP1,a,extra\n", "line 2 (row 1): has 3 cells where the header has 2"),
    ],
)  # fmt: skip
def test_a_broken_csv_object_is_refused_as_a_local_file_is(
    s3: Any, sandbox_url: str, body: bytes, says: str
) -> None:
    """A CSV in a store gets the local file's checks: a quote that never closes (which would
    take the rows below into one cell), a NUL, a ragged row: exit 2 naming the line, nothing
    sent."""
    s3.put_object(Bucket=BUCKET, Key="c.csv", Body=body)
    for command in (["validate"], ["run", "--base-url", sandbox_url, "--offline"]):
        result = CliRunner().invoke(
            main, [command[0], f"s3://{BUCKET}/c.csv", *command[1:]],
            env={"JOGG_API_KEY": "sk-sandbox"},
        )  # fmt: skip
        assert result.exit_code == 2, result.stderr
        assert f"s3://{BUCKET}/c.csv" in result.stderr
        assert says in result.stderr
    assert submissions(sandbox_url)["submissions"] == []


def test_a_gzip_csv_object_runs_and_a_cut_short_one_is_refused(s3: Any, sandbox_url: str) -> None:
    """`s3://.../c.csv.gz` is read decompressed, its results beside it as `c.csv.results.csv`;
    the same object cut short is exit 2 naming its URL, nothing sent."""
    rows = [{"product_id": pid, "length": "15"} for pid in product_ids(2)]
    packed = gzip.compress(csv_bytes(rows * 2000))
    s3.put_object(Bucket=BUCKET, Key="in/cut.csv.gz", Body=packed[:-100])
    s3.put_object(Bucket=BUCKET, Key="in/c.csv.gz", Body=gzip.compress(csv_bytes(rows)))
    command = ["--base-url", sandbox_url, "--rate-limit", "none", "--offline"]
    env = {"JOGG_API_KEY": "sk-sandbox"}
    cut = CliRunner().invoke(main, ["run", f"s3://{BUCKET}/in/cut.csv.gz", *command], env=env)
    assert cut.exit_code == 2
    assert f"s3://{BUCKET}/in/cut.csv.gz: the gzip data ends before its end" in cut.stderr
    assert submissions(sandbox_url)["submissions"] == []
    whole = CliRunner().invoke(main, ["run", f"s3://{BUCKET}/in/c.csv.gz", *command], env=env)
    assert whole.exit_code == 0, whole.stderr
    assert len(submissions(sandbox_url)["submissions"]) == 2
    results = read_results(ObjectURL(f"s3://{BUCKET}/in/c.csv.results.csv"))
    assert list(results["status"]) == ["submitted"] * 2


def test_a_store_that_cannot_be_reached_is_named_as_such(tmp_path: Path) -> None:
    """An endpoint that answers nothing: exit 2 saying the look-up failed and why, with no
    traceback, for validate and plan alike; never "no such catalog file". (A process of its
    own: fsspec keeps one S3 client a process, made for the endpoint of the first use.)"""
    env = {
        **os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "1",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
    }  # fmt: skip
    for command in ("validate", "plan"):
        result = subprocess.run(
            [sys.executable, "-m", "batch", command, f"s3://{BUCKET}/c.csv",
             "--state", str(tmp_path / "s.db"), "--results", str(tmp_path / "r.csv")],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert f"s3://{BUCKET}/c.csv: looking it up failed: Could not connect" in result.stderr


def test_dry_run_writes_its_requests_beside_s3_results(s3: Any, sandbox_url: str) -> None:
    """--dry-run: results and the request bodies it would send land in the store; none sent."""
    rows = [{"product_id": pid, "length": "15"} for pid in product_ids(2)]
    s3.put_object(Bucket=BUCKET, Key="c.csv", Body=csv_bytes(rows))
    cli = CliOverrides(
        base_url=sandbox_url, results=ObjectURL(f"s3://{BUCKET}/c.results.csv"), dry_run=True
    )
    catalog = ObjectURL(f"s3://{BUCKET}/c.csv")
    runner.run(build_run_config(catalog, cli, api_key=Secret("sk-sandbox")))
    assert keys(s3) == ["c.csv", "c.requests.jsonl", "c.results.csv"]
    body = s3.get_object(Bucket=BUCKET, Key="c.requests.jsonl")["Body"].read().decode()
    assert len(body.splitlines()) == 2
    assert submissions(sandbox_url)["submissions"] == []


def test_results_location_is_beside_a_stored_catalog_by_default(s3_endpoint: str) -> None:
    """No --results: the results object goes beside the catalog object; the state stays local."""
    config = build_run_config(
        ObjectURL("s3://b/in/c.xlsx"), CliOverrides(), api_key=Secret("sk-sandbox")
    )
    assert config.results == ObjectURL("s3://b/in/c.results.csv")
    assert isinstance(config.state, Path)
    assert storage.parse_location(str(config.results)) == config.results
