"""Prometheus metrics endpoint."""

from fastapi.testclient import TestClient

from matelix.server.app import create_app


def test_metrics_count_requests_by_route_template_and_status(client):
    client.get("/health")
    client.get("/health")
    client.get("/no/such")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'matelix_http_requests_total{method="GET",route="/health",status="200"} 2.0' in text
    assert 'matelix_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


def test_generation_and_live_gauges_are_exported(client):
    metrics = client.app.state.metrics
    metrics.record_generation("m", prompt_tokens=5, completion_tokens=7, ttft_s=0.2)
    metrics.add_gauges(lambda: [("matelix_engine_active_requests", "Active requests.", {("m",): 3.0}, ("model",))])
    metrics.add_gauges(lambda: 1 / 0)  # a failing provider must not break the scrape
    text = client.get("/metrics").text
    assert 'matelix_generated_tokens_total{model="m"} 7.0' in text
    assert 'matelix_prompt_tokens_total{model="m"} 5.0' in text
    assert 'matelix_time_to_first_token_seconds_count{model="m"} 1.0' in text
    assert 'matelix_engine_active_requests{model="m"} 3.0' in text


def test_metrics_need_the_key_and_count_401s(make_settings):
    with TestClient(create_app(make_settings(api_key="k"))) as c:
        assert c.get("/metrics").status_code == 401
        text = c.get("/metrics", headers={"X-API-Key": "k"}).text
        assert 'matelix_http_requests_total{method="GET",route="unmatched",status="401"} 1.0' in text
