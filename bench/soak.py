"""Soak test: OpenAI traffic with mid-stream disconnects while a training run is active.

    .venv/bin/python bench/soak.py                          # 1,000 requests, concurrency 32, 16 tokens each
    .venv/bin/python bench/soak.py --requests 200 --train-steps 100

In a temporary home with the tiny demo model and the demo chat data, this starts a real `matelix serve`
(subprocess, API key on) and a full fine-tuning run of the tiny model through `POST /start`. Once the run is
training, it warms the server up, records the server's RSS, and sends `--requests` requests through the
official async `openai` client at `--concurrency`: chat and text completions alternately, every second one
streamed, and one streaming client in five closing its stream after the first content chunk. Each request
asks for exactly `--max-tokens` tokens (`ignore_eos`), so usage is checked exactly: prompt tokens against
the tokenizer, completion tokens = max_tokens.

Goals (printed as a table, then one JSON line): zero 5xx and zero other errors; every request that was not
disconnected completes with correct usage; the engine's active and queued counts and the server's
generations in flight return to 0; server RSS after within 10% of before; the training run was active
throughout the traffic and completes every step with a decreasing loss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from matelix.server.live import ServerProcess

KEY = "soak-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
MODEL = "models/tiny-demo"
DISCONNECT_EVERY = 5  # one streaming client in five goes away mid-stream (20%)
RSS_TOLERANCE = 0.10


def prepare_home(home: Path) -> None:
    from matelix import demo
    from matelix.demo.model import create_demo_model

    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    create_demo_model(home / "models" / "tiny-demo", seed=0)
    shutil.copy(demo.demo_data_path("demo_chat.csv"), home / "datasets" / "chat.csv")


def start_server(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    server = ServerProcess.lab(home, log, env={"MATELIX_API_KEY": KEY}).start(timeout=60)
    return server.proc, server.url


def status(url: str) -> dict:
    return httpx.get(url + "/status", headers=HEADERS, timeout=30).json()


def gauge(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", headers=HEADERS, timeout=30).text
    found = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return sum(float(v) for v in found)


def count_5xx(url: str) -> float:
    """Responses with a 5xx status the server itself counted, on any route."""
    text = httpx.get(url + "/metrics", headers=HEADERS, timeout=30).text
    return sum(float(v) for v in re.findall(r'^matelix_http_requests_total\{[^}]*status="5\d\d"[^}]*\} (\S+)$',
                                            text, re.M))


class Expected:
    """Exact prompt token counts, from the model's own tokenizer."""

    def __init__(self, model_dir: Path):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def chat(self, content: str) -> int:
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                  tokenize=False)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def completion(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])


async def one_request(client, i: int, max_tokens: int, expected: Expected) -> dict:
    """Request i: chat for even i, else a text completion; streamed when i // 2 is even; every fifth
    streaming client disconnects after its first content chunk. Returns the outcome."""
    import openai

    chat = i % 2 == 0
    stream = (i // 2) % 2 == 0
    disconnect = stream and (i // 4) % DISCONNECT_EVERY == 0
    text = f"Frage {i}: " + "wie geht es dir? " * (i % 7)
    want_prompt = expected.chat(text) if chat else expected.completion(text)
    extra = {"ignore_eos": True}
    outcome = {"i": i, "chat": chat, "stream": stream, "disconnect": disconnect, "status": 200, "ok": False}
    started = time.perf_counter()
    try:
        if chat:
            kw = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                  "temperature": 0.8, "seed": i, "extra_body": extra}
            call = client.chat.completions.create
        else:
            kw = {"model": MODEL, "prompt": text, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
                  "extra_body": extra}
            call = client.completions.create
        if not stream:
            response = await call(**kw)
            usage = response.usage
            finish = [c.finish_reason for c in response.choices]
        else:
            events = await call(**kw, stream=True, stream_options={"include_usage": True})
            usage, finish = None, []
            async for chunk in events:
                delta = (chunk.choices[0].delta.content if chat else chunk.choices[0].text) if chunk.choices else None
                if disconnect and delta:
                    await events.close()  # the client goes away mid-stream
                    break
                finish += [c.finish_reason for c in chunk.choices if c.finish_reason]
                usage = chunk.usage or usage
        if disconnect:
            outcome["ok"] = True
        else:
            outcome["ok"] = (finish == ["length"] and usage is not None and usage.prompt_tokens == want_prompt
                             and usage.completion_tokens == max_tokens
                             and usage.total_tokens == want_prompt + max_tokens)
            outcome["usage"] = (usage.prompt_tokens, usage.completion_tokens) if usage else None
    except openai.APIStatusError as exc:
        outcome["status"] = exc.status_code
        outcome["error"] = str(exc)[:200]
    except Exception as exc:  # transport errors and the like count as failures too
        outcome["status"] = -1
        outcome["error"] = f"{type(exc).__name__}: {exc}"[:200]
    outcome["seconds"] = time.perf_counter() - started
    return outcome


async def traffic(url: str, n: int, concurrency: int, max_tokens: int, expected: Expected,
                  first: int = 0) -> list[dict]:
    import openai

    gate = asyncio.Semaphore(concurrency)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=300,
                                  http_client=openai.DefaultAsyncHttpxClient(
                                      limits=httpx.Limits(max_connections=concurrency * 2))) as client:
        async def bounded(i: int) -> dict:
            async with gate:
                return await one_request(client, i, max_tokens, expected)

        return await asyncio.gather(*(bounded(i) for i in range(first, first + n)))


def wait_for(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=64, help="requests before the RSS baseline")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="matelix-soak-"))
    home, log = tmp / "home", tmp / "server.log"
    prepare_home(home)
    expected = Expected(home / MODEL)
    server, url = start_server(home, log)
    proc = psutil.Process(server.pid)
    try:
        r = httpx.post(url + "/start", headers=HEADERS, timeout=120, json={
            "model_dir": MODEL, "csv_path": "datasets/chat.csv", "chunk_size": 128, "per_device_train_batch_size": 2,
            "max_steps": args.train_steps, "save_steps": 100, "logging_steps": 5, "preview_steps": 0})
        r.raise_for_status()
        run_id = r.json()["run_id"]
        wait_for(lambda: (status(url)["step"] or 0) >= 1, "the training run to reach step 1", 180)

        asyncio.run(traffic(url, args.warmup, args.concurrency, args.max_tokens, expected, first=10**6))
        wait_for(lambda: gauge(url, "matelix_generations_in_flight") == 0, "warm-up to drain", 60)
        rss_before = proc.memory_info().rss
        step_before = status(url)["step"]

        t_traffic = time.perf_counter()
        outcomes = asyncio.run(traffic(url, args.requests, args.concurrency, args.max_tokens, expected))
        traffic_s = time.perf_counter() - t_traffic
        during = status(url)
        training_active_throughout = during["running"] and during["state"] == "running"

        wait_for(lambda: gauge(url, "matelix_generations_in_flight") == 0, "generations to drain", 60)
        engine = httpx.get(url + "/inference_status", headers=HEADERS).json()
        rss_after = proc.memory_info().rss
        in_flight_after = gauge(url, "matelix_generations_in_flight")
        server_5xx = count_5xx(url)

        final = wait_for(lambda: (s := status(url))["state"] not in ("queued", "starting", "running", "stopping")
                         and not s["running"] and s, "the training run to finish", 600)
        metrics = httpx.get(url + f"/trainings/{run_id}", headers=HEADERS).json()["metrics"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    losses = [m["loss"] for m in metrics if "loss" in m]
    logged_steps = [m["step"] for m in metrics if "loss" in m]

    kept = [o for o in outcomes if not o["disconnect"]]
    disconnected = [o for o in outcomes if o["disconnect"]]
    streaming = [o for o in outcomes if o["stream"]]
    failures = [o for o in outcomes if o["status"] != 200]
    latencies = sorted(o["seconds"] for o in kept)
    result = {
        "bench": "soak", "requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "streaming": len(streaming), "disconnected": len(disconnected),
        "disconnected_share_of_streaming": round(len(disconnected) / max(1, len(streaming)), 3),
        "status_5xx": sum(1 for o in failures if o["status"] >= 500), "other_errors": len(failures)
        - sum(1 for o in failures if o["status"] >= 500), "server_5xx_counted": server_5xx,
        "completed_with_correct_usage": sum(1 for o in kept if o["ok"]), "not_disconnected": len(kept),
        "engine_active_after": sum(m["active_requests"] for m in engine["loaded"]),
        "engine_queued_after": sum(m["queued_requests"] for m in engine["loaded"]),
        "in_flight_after": in_flight_after, "rss_before_mb": round(rss_before / 2**20, 1), "rss_after_mb": round(rss_after / 2**20, 1),
        "rss_change": round(rss_after / rss_before - 1, 4), "traffic_seconds": round(traffic_s, 1),
        "requests_per_second": round(args.requests / traffic_s, 1),
        "latency_p50_s": round(latencies[len(latencies) // 2], 3) if latencies else None,
        "latency_p95_s": round(latencies[int(len(latencies) * 0.95)], 3) if latencies else None,
        "training_steps_during_traffic": (during["step"] or 0) - (step_before or 0),
        "training_active_throughout": training_active_throughout, "training_state": final["state"],
        "training_steps": final["step"], "training_planned_steps": args.train_steps,
        "training_logged_steps": len(logged_steps), "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None, "total_seconds": round(time.perf_counter() - t0, 1),
    }
    goals = {
        "zero 5xx": result["status_5xx"] == 0 and server_5xx == 0,
        "no other errors": result["other_errors"] == 0,
        "every kept request has correct usage": result["completed_with_correct_usage"] == len(kept),
        "engine back to 0 active/queued": result["engine_active_after"] == 0 and result["engine_queued_after"] == 0,
        "RSS after within 10% of before": abs(result["rss_change"]) <= RSS_TOLERANCE,
        "training active throughout": bool(training_active_throughout),
        "training completed every step": final["state"] == "completed" and final["step"] == args.train_steps,
        "loss decreased": bool(losses) and losses[-1] < losses[0],
    }
    result["goals_met"] = all(goals.values())
    print(f"{'figure':<40} value")
    for key in ("requests", "concurrency", "streaming", "disconnected", "status_5xx", "other_errors",
                "completed_with_correct_usage", "not_disconnected", "engine_active_after", "engine_queued_after",
                "rss_before_mb", "rss_after_mb", "rss_change", "traffic_seconds", "requests_per_second",
                "latency_p50_s", "latency_p95_s", "training_steps_during_traffic", "training_state",
                "training_steps", "first_loss", "last_loss", "total_seconds"):
        print(f"{key:<40} {result[key]}")
    print()
    for goal, met in goals.items():
        print(f"{'PASS' if met else 'FAIL'}  {goal}")
    for o in failures[:5]:
        print("error:", o)
    print(json.dumps(result))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if result["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
