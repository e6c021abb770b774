"""Serving throughput: the lab's batching engine vs `transformers serve` vs a bare in-process `generate` loop.

    .venv/bin/python bench/serve_throughput.py                 # ~20M-param Llama, fp32, CPU, 128 new tokens
    .venv/bin/python bench/serve_throughput.py --clients 1,16 --new-tokens 64 --skip-transformers-serve
    .venv/bin/python bench/serve_throughput.py --structured-only --new-tokens 48   # json_schema vs plain only

Builds a ~20M-parameter Llama with `create_demo_model` in a temporary home (its EOS row in the LM head is
zeroed so a random model never stops early: every request generates exactly `--new-tokens` tokens on both
servers). Then, one server at a time on the same machine:
* bare `model.generate` in this process, one request after another (the 1-client ceiling);
* `matelix serve` (a subprocess), streamed through `POST /chat_stream` with `Accept: text/event-stream`,
  then (`--structured-clients`, default 16) the same number of clients on `/v1/chat/completions` unconstrained
  and with `response_format: json_schema` (structured output; the goal is at least 0.8x the plain tokens/s);
* `transformers serve <model folder>` (a subprocess), streamed through `POST /v1/chat/completions`;
each with 1, 4, 16 and 64 concurrent clients, greedy. Prints per-level aggregate tokens/s, p50/p95 time to
first token and request latency, a ratio table (lab / transformers serve, lab / bare generate) and one JSON
line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from matelix.server.live import ServerProcess, free_port

MESSAGES = [{"role": "user", "content": "Erzähl mir eine kurze Geschichte über einen Fuchs."}]
BENCH_SPEC = {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 6, "num_attention_heads": 8,
              "num_key_value_heads": 8}


def build_model(home: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    from matelix.demo.model import TinyLlamaSpec, create_demo_model

    out = create_demo_model(home / "models" / "bench-20m", spec=TinyLlamaSpec(**BENCH_SPEC))
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] = 0.0  # never the argmax: fixed-length answers
    model.save_pretrained(out)
    return out


def bare_generate(model_dir: Path, new_tokens: int, requests: int, batch: int = 1) -> dict:
    """`requests` calls of `model.generate`, one after another, each on `batch` copies of the prompt as one
    static batch: batch 1 is the single-client ceiling, batch 16 what batching alone can gain on this CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]] * batch)
    kwargs = {"attention_mask": torch.ones_like(ids), "max_new_tokens": new_tokens, "do_sample": False,
              "pad_token_id": tokenizer.pad_token_id}
    model.generate(ids, **kwargs)  # warm-up
    latencies, tokens = [], 0
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        out = model.generate(ids, **kwargs)
        latencies.append(time.perf_counter() - t0)
        tokens += (out.shape[1] - ids.shape[1]) * batch
    wall = time.perf_counter() - start
    return {"clients": 1, "batch": batch, "requests": requests, "tokens": tokens, "tokens_per_s": tokens / wall,
            "latency_p50_s": statistics.median(latencies), "latency_p95_s": percentile(latencies, 95)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def one_lab_request(client: httpx.AsyncClient, url: str, new_tokens: int) -> tuple[float, float, int]:
    body = {"messages": MESSAGES, "max_new_tokens": new_tokens, "temperature": 0}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    async for event in sse_events(client, url + "/chat_stream", body):
        if "delta" in event and ttft is None:
            ttft = time.perf_counter() - t0
        if "usage" in event:
            tokens = event["usage"]["completion_tokens"]
    return ttft or 0.0, time.perf_counter() - t0, tokens


STORY_SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}, "mood": {"enum": ["froh", "ernst"]},
                                                "lines": {"type": "array", "items": {"type": "string"}}},
                "required": ["title", "mood", "lines"]}


async def one_v1_request(client: httpx.AsyncClient, url: str, new_tokens: int, schema: dict | None) -> tuple[float, float, int]:
    """A streamed `/v1/chat/completions` request, with `response_format: json_schema` when `schema` is given."""
    body = {"model": "models/bench-20m", "messages": MESSAGES, "max_tokens": new_tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "story", "schema": schema}}
    t0 = time.perf_counter()
    ttft, tokens = None, 0
    async for event in sse_events(client, url + "/v1/chat/completions", body):
        if event.get("choices") and event["choices"][0]["delta"].get("content") and ttft is None:
            ttft = time.perf_counter() - t0
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
    return ttft or 0.0, time.perf_counter() - t0, tokens


async def sse_events(client: httpx.AsyncClient, url: str, body: dict):
    """The JSON events of a streamed POST (up to `[DONE]`)."""
    async with client.stream("POST", url, json=body, headers={"Accept": "text/event-stream"}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


async def one_hf_request(client: httpx.AsyncClient, url: str, new_tokens: int, model: str) -> tuple[float, float, int]:
    body = {"model": model, "messages": MESSAGES, "max_tokens": new_tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    ttft, chunks = None, 0
    async for event in sse_events(client, url + "/v1/chat/completions", body):
        for choice in event.get("choices", []):
            if choice.get("delta", {}).get("content"):
                chunks += 1
                ttft = ttft if ttft is not None else time.perf_counter() - t0
    # transformers serve streams one chunk per token and sends no usage when streaming.
    return ttft or 0.0, time.perf_counter() - t0, chunks


async def drive(request, clients: int, per_client: int) -> dict:
    ttfts, latencies, tokens = [], [], 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for _ in range(per_client):
            ttft, latency, n = await request(client)
            ttfts.append(ttft)
            latencies.append(latency)
            tokens += n

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0), limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {"clients": clients, "requests": clients * per_client, "tokens": tokens, "tokens_per_s": tokens / wall,
            "ttft_p50_s": statistics.median(ttfts), "ttft_p95_s": percentile(ttfts, 95),
            "latency_p50_s": statistics.median(latencies), "latency_p95_s": percentile(latencies, 95)}


def run_levels(name: str, request, levels: list[int], min_requests: int) -> list[dict]:
    results = []
    asyncio.run(drive(request, 1, 1))  # warm-up
    for clients in levels:
        per_client = max(1, -(-min_requests // clients))
        result = asyncio.run(drive(request, clients, per_client))
        print(f"  {name:18s} {clients:3d} clients: {result['tokens_per_s']:8.1f} tok/s  "
              f"ttft p50 {result['ttft_p50_s']:.3f}s p95 {result['ttft_p95_s']:.3f}s  "
              f"latency p50 {result['latency_p50_s']:.2f}s p95 {result['latency_p95_s']:.2f}s", flush=True)
        results.append(result)
    return results


def bench_lab(home: Path, levels: list[int], new_tokens: int, min_requests: int, env: dict,
              structured_clients: int) -> tuple[list[dict], list[dict]]:
    """The lab's levels, then (unless `structured_clients` is 0) the same `/v1` traffic unconstrained and
    with a json_schema."""
    with ServerProcess.lab(home, env={**env, "MATELIX_OFFLINE": "1"}) as server:
        httpx.post(server.url + "/load_inference", json={"model_dir": "models/bench-20m", "device": "cpu"},
                   timeout=300).raise_for_status()
        lab = run_levels("matelix", lambda c: one_lab_request(c, server.url, new_tokens), levels, min_requests)
        structured = []
        for _ in range(2 if structured_clients else 0):  # plain, schema, plain, schema: load drift hits both
            for name, schema in (("/v1 plain", None), ("/v1 json_schema", STORY_SCHEMA)):
                [result] = run_levels(name, lambda c, s=schema: one_v1_request(c, server.url, new_tokens, s),
                                      [structured_clients], min_requests)
                structured.append({**result, "case": name})
        return lab, structured


def bench_transformers_serve(model_dir: Path, levels: list[int], new_tokens: int, min_requests: int,
                             env: dict) -> list[dict]:
    port = free_port()
    cli = Path(sys.executable).with_name("transformers")
    argv = [str(cli), "serve", str(model_dir), "--device", "cpu", "--dtype", "float32", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "error"]
    with ServerProcess(argv, port=port, env=env) as server:
        return run_levels("transformers serve",
                          lambda c: one_hf_request(c, server.url, new_tokens, str(model_dir)), levels, min_requests)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:6.2f}x" if a and b else "   n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16,64", help="comma-separated concurrency levels")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--min-requests", type=int, default=8, help="requests per level at least")
    parser.add_argument("--skip-transformers-serve", action="store_true")
    parser.add_argument("--structured-clients", type=int, default=16,
                        help="clients of the structured-output case (json_schema vs plain on /v1); 0 = skip")
    parser.add_argument("--structured-only", action="store_true",
                        help="only the structured-output case (no bare generate, no levels, no transformers serve)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in every process (0 = torch's default); 1 is steadier on a busy machine")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    os.environ.update(env)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"serve_throughput: levels={levels} new_tokens={args.new_tokens} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="matelix-bench-") as tmp:
        home = Path(tmp)
        for sub in ("datasets", "training_outputs", "models"):
            (home / sub).mkdir()
        model_dir = build_model(home)
        bare = batched = {}
        if args.structured_only:
            levels, args.skip_transformers_serve = [], True
        else:
            bare = bare_generate(model_dir, args.new_tokens, requests=4)
            print(f"  bare generate        1 client : {bare['tokens_per_s']:8.1f} tok/s  "
                  f"latency p50 {bare['latency_p50_s']:.2f}s", flush=True)
            batched = bare_generate(model_dir, args.new_tokens, requests=1, batch=16)
            print(f"  generate, static batch of 16 : {batched['tokens_per_s']:8.1f} tok/s "
                  f"({batched['tokens_per_s'] / bare['tokens_per_s']:.2f}x one request: the most batching "
                  "gains on this CPU)", flush=True)
        lab, structured = bench_lab(home, levels, args.new_tokens, args.min_requests, env, args.structured_clients)
        hf = [] if args.skip_transformers_serve else \
            bench_transformers_serve(model_dir, levels, args.new_tokens, args.min_requests, env)

    print("\nclients | lab tok/s | tf-serve tok/s | lab/tf-serve | lab/bare generate | lab TTFT p95 / 1-client")
    base_ttft = lab[0]["ttft_p95_s"] if lab else None
    for i, level in enumerate(lab):
        other = hf[i]["tokens_per_s"] if hf else None
        print(f"{level['clients']:7d} | {level['tokens_per_s']:9.1f} | "
              f"{other if other is not None else float('nan'):14.1f} | {ratio(level['tokens_per_s'], other):>12s} | "
              f"{ratio(level['tokens_per_s'], bare.get('tokens_per_s')):>17s} | "
              f"{ratio(level['ttft_p95_s'], base_ttft):>8s}")
    if structured:
        plain = statistics.mean(r["tokens_per_s"] for r in structured if r["case"] == "/v1 plain")
        constrained = statistics.mean(r["tokens_per_s"] for r in structured if r["case"] == "/v1 json_schema")
        print(f"\nstructured output, {structured[0]['clients']} clients on /v1 (mean of 2 alternating runs each): "
              f"json_schema {constrained:.1f} tok/s vs plain {plain:.1f} tok/s = {ratio(constrained, plain).strip()} "
              "(goal: at least 0.8x)")
    print(json.dumps({"bench": "serve_throughput", "new_tokens": args.new_tokens, "model_params": "~21M",
                      "bare_generate": bare, "generate_batch16": batched, "matelix": lab,
                      "transformers_serve": hf, "structured": structured}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
