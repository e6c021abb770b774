"""Live gauges for `/metrics`, read at scrape time from the model registry and the training run folders.

Each provider returns (name, help, {label values: value}, label names) families (see `server.metrics`);
nothing here is cached, so a scrape always shows what the engines and status.json say right now.
"""

from __future__ import annotations

from collections.abc import Iterator

from matelix.runstates import STATES

Family = tuple[str, str, dict[tuple[str, ...], float], tuple[str, ...]]


def inference_gauges(app) -> Iterator[Family]:
    """Loaded models and adapters, and per model the generations running and waiting (an adapter's count within
    its base's); the admission gate's totals."""
    registry = app.state.registry
    loaded = registry.status()["loaded"]
    adapters = sum(m["served_as"] == "adapter" for m in loaded)
    yield ("matelix_loaded_models", "Models resident for inference.", {(): float(len(loaded) - adapters)}, ())
    yield ("matelix_loaded_adapters", "LoRA adapters attached to a resident base.", {(): float(adapters)}, ())
    yield ("matelix_engine_active_requests", "Generations in the running batch, by model.",
           {(m["id"],): float(m["active_requests"]) for m in loaded}, ("model",))
    yield ("matelix_engine_queued_requests", "Generations waiting for a batch slot, by model (queue depth).",
           {(m["id"],): float(m["queued_requests"]) for m in loaded}, ("model",))
    in_flight, capacity, refused = registry.admission.in_flight, registry.admission.capacity, registry.admission.refused
    yield ("matelix_generations_in_flight", "Generations queued or running, server-wide.", {(): float(in_flight)}, ())
    yield ("matelix_generations_capacity", "Most generations queued or running before requests get 429.",
           {(): float(capacity)}, ())
    yield ("matelix_generation_requests_refused", "Requests refused with 429 since start.", {(): float(refused)}, ())


def training_gauges(app) -> Iterator[Family]:
    """The current training run (the active one, else the most recent): state, step, loss, tokens/s."""
    runs = app.state.runs
    rundir = runs.current()
    view = runs.status_view(rundir)
    run = view["run_id"] or ""
    yield ("matelix_training_running", "1 while a training worker is alive.", {(): float(bool(view["running"]))}, ())
    yield ("matelix_training_state", "1 for the current run's state, 0 for the others.",
           {(run, state): float(state == view["state"]) for state in STATES} if rundir else {}, ("run_id", "state"))
    for key, name, help_text in (("step", "matelix_training_step", "Optimizer steps done."),
                                 ("total_steps", "matelix_training_total_steps", "Optimizer steps planned."),
                                 ("loss", "matelix_training_loss", "Latest training loss."),
                                 ("eval_loss", "matelix_training_eval_loss", "Latest evaluation loss."),
                                 ("tokens_per_second", "matelix_training_tokens_per_second",
                                  "Training throughput at the latest logging step."),
                                 ("tokens_seen", "matelix_training_tokens_seen", "Tokens trained on.")):
        value = view.get(key)
        samples = {(run,): float(value)} if rundir and isinstance(value, int | float) else {}
        yield name, help_text, samples, ("run_id",)


def register(app) -> None:
    metrics = app.state.metrics
    metrics.add_gauges(lambda: list(inference_gauges(app)))
    metrics.add_gauges(lambda: list(training_gauges(app)))
