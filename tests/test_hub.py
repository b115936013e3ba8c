"""fipo_bench.hub: an unreachable Hugging Face Hub is reported at once, with the way out (offline mode
for a cached model, a local directory otherwise); HF_HUB_OFFLINE means the cache only."""

import http.server
import threading

import pytest
from huggingface_hub import constants

from fipo_bench.hub import check_hub_model, unreachable_reason


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache; `cache(repo_id)` puts a model's config.json in it as hf would."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def cache(repo_id: str) -> None:
        repo = tmp_path / f"models--{repo_id.replace('/', '--')}"
        (repo / "snapshots" / "0123abc").mkdir(parents=True)
        (repo / "snapshots" / "0123abc" / "config.json").write_text('{"model_type": "qwen2"}')
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0123abc")

    return cache


@pytest.mark.parametrize("status", [200, 404])
def test_any_http_answer_means_the_hub_is_there(status, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert unreachable_reason(f"http://127.0.0.1:{server.server_port}/{status}") is None
    finally:
        server.shutdown()
        server.server_close()


def test_a_closed_port_is_unreachable_with_the_reason(unreachable_hub):
    assert "refused" in unreachable_reason(unreachable_hub).lower()


def test_uncached_model_with_the_hub_out_of_reach(unreachable_hub, hub_cache):
    expected = rf"model 'org/m' comes from the Hugging Face Hub, which does not answer at {unreachable_hub} "
    with pytest.raises(ConnectionError, match=expected + ".*pass a local model directory"):
        check_hub_model("org/m")


def test_cached_model_with_the_hub_out_of_reach_points_at_offline_mode(unreachable_hub, hub_cache):
    hub_cache("org/m")
    with pytest.raises(ConnectionError, match="it is in the Hugging Face cache: set HF_HUB_OFFLINE=1"):
        check_hub_model("org/m")


def test_offline_mode_uses_the_cache_and_never_the_network(hub_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("fipo_bench.hub.unreachable_reason", lambda *a: pytest.fail("asked the network"))
    hub_cache("org/m")
    check_hub_model("org/m")  # cached: fine
    expected = r"'org/other' is not in the Hugging Face cache .*HF_HUB_OFFLINE is set: pass a local model"
    with pytest.raises(FileNotFoundError, match=expected + r".*hf download org/other"):
        check_hub_model("org/other")
