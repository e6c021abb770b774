"""Settings from MATELIX_* variables."""

from pathlib import Path

from matelix.settings import Settings


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("MATELIX_HOME", "MATELIX_API_KEY", "MATELIX_PORT", "MATELIX_HOST", "MATELIX_CORS_ORIGINS"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.home == tmp_path.resolve()
    assert (s.host, s.port, s.api_key, s.cors_origins) == ("127.0.0.1", 8002, None, [])
    assert s.trust_remote_code is False and s.offline is False
    assert s.datasets_dir == tmp_path.resolve() / "datasets"


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("MATELIX_HOME", str(tmp_path))
    monkeypatch.setenv("MATELIX_PORT", "9001")
    monkeypatch.setenv("MATELIX_API_KEY", "k")
    monkeypatch.setenv("MATELIX_CORS_ORIGINS", "http://a.example, http://b.example")
    s = Settings()
    assert s.home == Path(tmp_path).resolve()
    assert s.port == 9001 and s.api_key == "k"
    assert s.cors_origins == ["http://a.example", "http://b.example"]


def test_empty_api_key_means_none(monkeypatch):
    monkeypatch.setenv("MATELIX_API_KEY", "  ")
    assert Settings().api_key is None


def test_loopback_detection():
    assert Settings(host="127.0.0.1").is_loopback()
    assert Settings(host="localhost").is_loopback()
    assert Settings(host="::1").is_loopback()
    assert not Settings(host="0.0.0.0").is_loopback()
    assert not Settings(host="192.168.1.5").is_loopback()
