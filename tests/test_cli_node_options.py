"""`racenet node run` options: the inference backend is selectable, bad values are one-line errors; a devnet node's
backend (`racenet devnet up --backend NODE=SPEC`) is checked and kept in its record."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from racenet.cli.main import cli
from racenet.devnet.state import DevnetState, NodeRecord, Ports, load
from racenet.ml.openai_http import OpenAIHTTPBackend
from racenet.node.compute import ComputeThread
from racenet.node.daemon import check_backend_spec, make_backend
from tests.test_ml_openai_http import MODEL, Canned, running_fake


@pytest.mark.parametrize("spec", ["transformers", "openai:http://127.0.0.1:8000/v1", "openai:https://gpu.example/v1"])
def test_backend_specs_that_name_a_backend(spec: str) -> None:
    assert check_backend_spec(spec) == spec


@pytest.mark.parametrize("spec", ["", "vllm", "openai:", "openai:127.0.0.1:8000", "openai:http://", "transformers:x"])
def test_backend_specs_that_do_not(spec: str) -> None:
    with pytest.raises(ValueError, match="openai:http"):
        check_backend_spec(spec)


def test_openai_spec_makes_the_http_backend_for_that_server() -> None:
    backend = make_backend("openai:http://127.0.0.1:8000/v1/", ComputeThread())
    assert isinstance(backend, OpenAIHTTPBackend) and backend.base_url == "http://127.0.0.1:8000/v1"
    backend.close()


def test_openai_backend_sends_the_api_key_to_its_server() -> None:
    with running_fake() as fake:
        fake.routes["GET", "/v1/models"] = Canned(body={"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        backend = make_backend(f"openai:{fake.url}", ComputeThread(), api_key="sk-local")
        assert isinstance(backend, OpenAIHTTPBackend)
        with backend:
            assert backend.models() == [MODEL]
    assert fake.authorization == ["Bearer sk-local"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "vllm"], "Invalid value for '--backend'"),
        (["--api", "8080x"], "expected host:port"),
        (["--api", "127.0.0.1:70000"], "expected host:port"),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["node", "run", "--key", "nobody", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("backend", ["2=vllm", "openai:http://127.0.0.1:8080/v1", "x=transformers"])
def test_devnet_backends_name_a_node_and_a_spec(tmp_path: Path, backend: str) -> None:
    result = CliRunner().invoke(cli, ["devnet", "up", "--dir", str(tmp_path / "net"), "--backend", backend])
    assert result.exit_code == 2 and "NODE=SPEC" in result.output and not (tmp_path / "net").exists()


def test_a_devnet_node_keeps_its_backend(tmp_path: Path) -> None:
    spec = "openai:http://127.0.0.1:8080/v1"
    node = NodeRecord(2, "id", b"\x01" * 32, Ports(1, 2, 3, 4), "account", backend=spec)
    DevnetState(tmp_path, "chain", "500ms", 26600, "faucet", [node]).save()
    assert [n.backend for n in load(tmp_path).nodes] == [spec]
