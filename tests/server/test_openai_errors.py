"""Validation errors on `/v1/*` are 400 in the common error shape with `param`; other routes keep 422."""


def test_invalid_value_is_400_with_param(client):
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                  "temperature": 5})
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "temperature: Input should be less than or equal to 2",
                                  "type": "invalid_request_error", "param": "temperature",
                                  "code": "invalid_value"}}


def test_missing_field_is_400_missing_required_parameter(client):
    r = client.post("/v1/completions", json={"prompt": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "model" and r.json()["error"]["code"] == "missing_required_parameter"


def test_malformed_json_is_400(client):
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]


def test_stream_options_without_stream_is_400(client):
    r = client.post("/v1/completions", json={"model": "m", "prompt": "x", "stream_options": {"include_usage": True}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"


def test_lab_routes_keep_422_for_validation_errors(client):
    r = client.post("/chat", json={"messages": [{"role": "user", "content": "x"}], "temperature": -1})
    assert r.status_code == 422 and r.json()["error"]["param"] == "temperature"
