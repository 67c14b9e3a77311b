"""Remote (`http(s)://`) `$ref`s: refused by default; with the flag fetched within limits,
cached by URL, recorded in the manifest, so regeneration and `--check` work offline and
notice a change. The documents are served by a local HTTP server started here."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asyncgen.cli import app
from asyncgen.errors import SpecError
from asyncgen.load import Document, Ref, RefPolicy, load_document, remote
from asyncgen.write import MANIFEST

runner = CliRunner()
SHARED_SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"

#: path -> (status, headers, body); a body of None is never sent (the handler sleeps).
Routes = dict[str, tuple[int, dict[str, str], bytes]]

SCHEMAS = b"""\
Reading:
  type: object
  required: [value]
  properties:
    value: {type: number}
    unit: {$ref: 'units.yaml#/Unit'}
"""
UNITS = b"Unit: {type: string, enum: [celsius, kelvin]}\n"


class Server:
    def __init__(self) -> None:
        self.routes: Routes = {}
        self.hits: list[str] = []
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, headers, body = server.routes.get(
                    self.path, (404, {"Content-Type": "text/plain"}, b"not found")
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.delay:
                    self.wfile.write(body[:1])
                    self.wfile.flush()
                    time.sleep(server.delay)
                    body = body[1:]
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, content_type: str = "application/yaml") -> str:
        self.routes[path] = (200, {"Content-Type": content_type}, body)
        return self.url + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ASYNCGEN_CACHE_DIR", str(folder))
    monkeypatch.delenv("ASYNCGEN_NO_CACHE", raising=False)
    return folder


def spec_referring_to(tmp_path: Path, url: str) -> Path:
    spec = tmp_path / "spec" / "asyncapi.yaml"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        f"""\
asyncapi: 3.0.0
info: {{title: Remote readings, version: 1.0.0}}
channels:
  readings:
    address: sensors/{{sensorId}}/readings
    parameters: {{sensorId: {{}}}}
    messages:
      reading:
        payload: {{$ref: '{url}'}}
operations:
  receiveReading:
    action: receive
    channel: {{$ref: '#/channels/readings'}}
""",
        encoding="utf-8",
    )
    return spec


def payload(doc: Document) -> tuple[object, Ref]:
    pointer = "/channels/readings/messages/reading/payload"
    return doc.resolve_at(Ref(doc.root.path, pointer))


def problems_of(error: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(problem) for problem in error.value.problems]


# -- loading ---------------------------------------------------------------------------


def test_remote_ref_is_refused_without_the_flag_and_nothing_is_fetched(
    server: Server, tmp_path: Path
) -> None:
    url = server.serve("/schemas.yaml", SCHEMAS) + "#/Reading"
    doc = load_document(spec_referring_to(tmp_path, url))
    with pytest.raises(SpecError) as error:
        payload(doc)
    (problem,) = problems_of(error)
    assert "asyncapi.yaml:9:" in problem and url in problem
    assert "--allow-remote-refs" in problem
    assert server.hits == []


def test_remote_document_and_its_relative_refs_are_fetched_with_the_flag(
    server: Server, tmp_path: Path
) -> None:
    url = server.serve("/schemas/readings.yaml", SCHEMAS)
    server.serve("/schemas/units.yaml", UNITS)
    doc = load_document(spec_referring_to(tmp_path, url + "#/Reading"), RefPolicy(True))
    value, at = payload(doc)
    assert isinstance(value, dict) and value["required"] == ["value"]
    unit, _ = doc.resolve(value["properties"]["unit"], at.child("properties", "unit"))
    assert unit == {"type": "string", "enum": ["celsius", "kelvin"]}
    assert sorted(item.url for item in doc.remote.values()) == [
        url,
        server.url + "/schemas/units.yaml",
    ]
    assert doc.local_files == [doc.root.path]


def test_a_remote_document_may_not_refer_to_a_local_file(server: Server, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("Reading: {type: string}\n", encoding="utf-8")
    body = f"Reading: {{$ref: 'file://{secret}#/Reading'}}\n".encode()
    url = server.serve("/evil.yaml", body)
    doc = load_document(spec_referring_to(tmp_path, url + "#/Reading"), RefPolicy(True))
    with pytest.raises(SpecError) as error:
        payload(doc)
    (problem,) = problems_of(error)
    assert problem.startswith(url + ":1:")  # located in the remote document, by its URL
    assert "may not refer to local files" in problem


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ((404, {"Content-Type": "text/plain"}, b"gone"), "HTTP 404"),
        ((200, {"Content-Type": "text/html"}, b"<html>login</html>"), "served as 'text/html'"),
    ],
    ids=["not-found", "web-page"],
)
def test_a_failed_fetch_is_a_located_error_naming_the_url(
    server: Server,
    tmp_path: Path,
    route: tuple[int, dict[str, str], bytes],
    expected: str,
) -> None:
    server.routes["/schemas.yaml"] = route
    url = server.url + "/schemas.yaml"
    doc = load_document(spec_referring_to(tmp_path, url), RefPolicy(True))
    with pytest.raises(SpecError) as error:
        payload(doc)
    (problem,) = problems_of(error)
    assert "asyncapi.yaml:9:" in problem and url in problem and expected in problem


def test_a_broken_remote_document_is_reported_at_its_url_and_line(
    server: Server, tmp_path: Path
) -> None:
    url = server.serve("/broken.yaml", b"Reading:\n  type: [string\n")
    doc = load_document(spec_referring_to(tmp_path, url + "#/Reading"), RefPolicy(True))
    with pytest.raises(SpecError) as error:
        payload(doc)
    (problem,) = problems_of(error)
    assert problem.startswith(f"{url}:3:") and "invalid YAML" in problem


def test_a_document_larger_than_the_cap_is_refused(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "MAX_REMOTE_BYTES", 64)
    url = server.serve("/big.yaml", b"Reading: {type: string}\n" + b"# padding\n" * 20)
    doc = load_document(spec_referring_to(tmp_path, url), RefPolicy(True))
    with pytest.raises(SpecError) as error:
        payload(doc)
    assert "larger than 64 bytes" in problems_of(error)[0]


def test_a_slow_server_runs_into_the_timeout(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "TIMEOUT", 0.3)
    server.delay = 2.0
    url = server.serve("/slow.yaml", SCHEMAS)
    doc = load_document(spec_referring_to(tmp_path, url), RefPolicy(True))
    started = time.monotonic()
    with pytest.raises(SpecError) as error:
        payload(doc)
    assert time.monotonic() - started < 1.5
    assert url in problems_of(error)[0] and "no answer in 0.3 s" in problems_of(error)[0]


def test_redirects_are_followed_up_to_a_limit(server: Server, tmp_path: Path) -> None:
    final = server.serve("/final.yaml", SCHEMAS)
    server.routes["/moved.yaml"] = (301, {"Location": final}, b"")
    doc = load_document(spec_referring_to(tmp_path, server.url + "/moved.yaml"), RefPolicy(True))
    assert "Reading" in payload(doc)[0]  # type: ignore[operator]

    for index in range(10):
        server.routes[f"/loop{index}.yaml"] = (302, {"Location": f"/loop{index + 1}.yaml"}, b"")
    url = server.url + "/loop0.yaml"
    doc = load_document(spec_referring_to(tmp_path, url), RefPolicy(True))
    with pytest.raises(SpecError) as error:
        payload(doc)
    assert url in problems_of(error)[0]
    assert len(server.hits) - 2 == remote.MAX_REDIRECTS + 1


def test_a_redirect_from_https_to_http_is_refused() -> None:
    handler = remote._Redirects()
    request = urllib.request.Request("https://example.org/schemas.yaml")
    with pytest.raises(remote.FetchError, match="leaving https"):
        handler.redirect_request(
            request,
            None,
            302,
            "Found",
            None,
            "http://example.org/schemas.yaml",  # type: ignore[arg-type]
        )


def test_a_fetched_document_is_read_from_the_cache_afterwards(
    server: Server, tmp_path: Path
) -> None:
    url = server.serve("/schemas.yaml", SCHEMAS)
    spec = spec_referring_to(tmp_path, url + "#/Reading")
    payload(load_document(spec, RefPolicy(True)))
    server.stop()
    value, _ = payload(load_document(spec, RefPolicy(True)))
    assert isinstance(value, dict) and value["type"] == "object"


def test_the_shared_adeo_spec_with_the_flag_and_no_network_fails_naming_the_url() -> None:
    spec = SHARED_SPECS / "3.0.0" / "adeo-kafka-request-reply-asyncapi.yml"
    if not spec.is_file():
        pytest.fail(f"{spec} is missing")
    result = runner.invoke(app, ["validate", "--allow-remote-refs", str(spec)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert (
        "cannot fetch https://www.asyncapi.com/resources/casestudies/adeo/"
        "CostingRequestPayload.avsc" in result.output
    )


# -- generating ------------------------------------------------------------------------


def generate_with_remote_refs(server: Server, tmp_path: Path) -> Path:
    url = server.serve("/schemas.yaml", SCHEMAS)
    server.serve("/units.yaml", UNITS)
    spec = spec_referring_to(tmp_path, url + "#/Reading")
    project = tmp_path / "svc"
    made = runner.invoke(app, ["generate", str(spec), "-o", str(project), "--allow-remote-refs"])
    assert made.exit_code == 0, made.output
    return project


def test_generation_records_remote_documents_and_checks_offline(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.serve("/schemas.yaml", SCHEMAS)
    server.serve("/units.yaml", UNITS)
    spec = spec_referring_to(tmp_path, url + "#/Reading")
    project = tmp_path / "svc"
    refused = runner.invoke(app, ["generate", str(spec), "-o", str(project)])
    assert refused.exit_code == 1 and "--allow-remote-refs" in refused.output
    assert not project.exists()

    generate_with_remote_refs(server, tmp_path)
    manifest = json.loads((project / MANIFEST).read_text())
    assert set(manifest["remote"]) == {url, server.url + "/units.yaml"}
    assert all(len(value) == 64 for value in manifest["remote"].values())
    assert "allow_remote_refs = true" in (project / "pyproject.toml").read_text()

    # Offline: the server is gone; regeneration and --check read the cache.
    server.stop()
    monkeypatch.chdir(project)
    checked = runner.invoke(app, ["generate", "--check"])
    assert checked.exit_code == 0 and "up to date" in checked.output, checked.output


def test_a_changed_remote_document_is_noticed(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = generate_with_remote_refs(server, tmp_path)
    server.serve("/units.yaml", b"Unit: {type: string, enum: [celsius, kelvin, fahrenheit]}\n")
    monkeypatch.setenv("ASYNCGEN_NO_CACHE", "1")  # fetch again rather than read the cache
    checked = runner.invoke(app, ["generate", "--check", "--quiet", "-o", str(project)])
    assert checked.exit_code == 1, checked.output
    assert "_generated/models.py" in checked.output
    assert ".asyncgen-manifest.json" not in checked.output
