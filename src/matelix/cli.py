"""`matelix` command line: thin wrappers that parse arguments and call the library.

    matelix serve [--host H] [--port P] [--home DIR] [--insecure]
    matelix demo-model [--out DIR] [--seed N]
    matelix demo-assets [--home DIR] [--no-real-model]
    matelix import-gguf FILE.gguf --out models/NAME
    matelix data validate FILE [--template-mode M] [--model DIR] [--chunk-size N] [--column-name C] [--json]
    matelix train [CONFIG.yaml|json] [--preset NAME] [--home DIR] [--learning-rate 1e-4 --ngrams.top-k 500 ...]
    matelix ngrams mine DATASET --model DIR [--top-k N] [--max-len N] [--min-count N] [--min-chars N]
                        [--max-samples N] [--screen-tokens N] [--template-mode M] [--column-name C] [--show N] [--json]

The options of `train` (every TrainConfig field) and the phrase options of `ngrams mine` (NgramOptions) are
generated from the config models by pydantic-settings, so their names, defaults and help are the models'.
    matelix export RUN --format hf|adapter|gguf [--quant f16|q8_0] [--out DIR] [--home DIR] [--json]
    matelix eval MODEL --tasks T[,T...] [--limit N] [--backend hf|api] [--home DIR] [--json]

`matelix COMMAND --help` describes every option.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from matelix import __version__


def _settings(args: argparse.Namespace):
    from matelix.settings import Settings

    overrides = {k: v for k in ("home", "host", "port") if (v := getattr(args, k, None)) is not None}
    return Settings(**overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from matelix.server.app import create_app
    from matelix.server.shutdown import serve

    settings = _settings(args)
    if not settings.is_loopback() and not settings.api_key and not args.insecure:
        print(f"Refusing to listen on {settings.host} (reachable from other machines) without an API key.\n"
              "Set MATELIX_API_KEY=<secret>, bind to 127.0.0.1, or pass --insecure to accept the risk.",
              file=sys.stderr)
        return 2
    print(f"MaTeLiX Lab {__version__}: home={settings.home} -> http://{settings.host}:{settings.port}/"
          f" (api key {'required' if settings.api_key else 'not set'})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(create_app(settings), settings.host, settings.port)
    return 0


def cmd_demo_model(args: argparse.Namespace) -> int:
    from matelix.demo.model import create_demo_model

    out = create_demo_model(Path(args.out), seed=args.seed)
    print(f"demo model saved to {out}")
    return 0


def cmd_demo_assets(args: argparse.Namespace) -> int:
    from matelix.demo.assets import ensure_demo_assets

    ensure_demo_assets(_settings(args), real_model=not args.no_real_model)
    return 0


def cmd_import_gguf(args: argparse.Namespace) -> int:
    from matelix.models.gguf_import import GGUFImportError, import_gguf

    try:
        out = import_gguf(args.file, args.out)
    except GGUFImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model saved to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from matelix.training.foreground import run_foreground

    overrides = model_options(args)
    if args.config is None and not args.preset and not overrides:
        print("error: give a config file, a preset (--preset NAME) or the fields as options (--model-dir ...)",
              file=sys.stderr)
        return 2
    return run_foreground(args.config, args.home, args.preset, overrides)


def cmd_data_validate(args: argparse.Namespace) -> int:
    from matelix.data.console import run_validate

    return run_validate(args.file, args.template_mode, args.model, args.chunk_size, args.column_name, args.json)


def cmd_ngrams_mine(args: argparse.Namespace) -> int:
    from matelix.training.ngram_console import run_mine

    return run_mine(args.dataset, args.model, model_options(args), template_mode=args.template_mode,
                    column_name=args.column_name, as_json=args.json, shown=args.show)


def cmd_export(args: argparse.Namespace) -> int:
    from matelix.export.console import run_export

    return run_export(_settings(args), args.run, args.format, args.quant, args.out, as_json=args.json)


def cmd_eval(args: argparse.Namespace) -> int:
    from matelix.evaluation.console import run_eval

    return run_eval(_settings(args), args.model, args.tasks, args.limit, args.backend, as_json=args.json)


def add_model_options(parser: argparse.ArgumentParser, model) -> None:
    """Adds an option per field of the pydantic `model` to `parser` (`--learning-rate`, nested `--ngrams.top-k`,
    `--packing/--no-packing`, `none` for an empty value); `model_options(args)` reads back those given."""
    from pydantic_settings import CliSettingsSource

    source = CliSettingsSource(model, root_parser=parser, cli_kebab_case=True, cli_implicit_flags=True,
                               cli_parse_none_str="none", cli_avoid_json=True)
    parser.set_defaults(model_options=source)


def model_options(args: argparse.Namespace) -> dict:
    """The fields given as options (nested as the model nests them), as strings the model validates."""
    return args.model_options(parsed_args=args)()


def build_parser() -> argparse.ArgumentParser:
    from matelix.training.config import NgramOptions, TrainConfig

    parser = argparse.ArgumentParser(prog="matelix", description="MaTeLiX Lab: fine-tune and serve causal LMs.")
    parser.add_argument("--version", action="version", version=f"matelix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="start the lab server (dashboard, REST/WebSocket and /v1 API)")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1, env MATELIX_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8002, env MATELIX_PORT)")
    serve.add_argument("--home", type=Path, help="folder holding datasets/, training_outputs/, models/")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback host without an API key")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo-model", help="build the tiny demo Llama model + tokenizer (seconds, offline)")
    demo.add_argument("--out", default="models/tiny-demo", help="output folder (default models/tiny-demo)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights)")
    demo.set_defaults(func=cmd_demo_model)

    assets = sub.add_parser("demo-assets", help="copy the demo datasets and build the demo model under home")
    assets.add_argument("--home", type=Path, help="folder holding datasets/, training_outputs/, models/")
    assets.add_argument("--no-real-model", action="store_true",
                        help="skip converting the real SmolLM2-135M-Instruct model")
    assets.set_defaults(func=cmd_demo_assets)

    gguf = sub.add_parser("import-gguf", help="convert a GGUF file into a model folder (safetensors, tokenizer, "
                                              "chat template)")
    gguf.add_argument("file", type=Path, help="the .gguf file (an architecture transformers can read)")
    gguf.add_argument("--out", type=Path, required=True, help="new model folder, e.g. models/NAME")
    gguf.set_defaults(func=cmd_import_gguf)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True,
                                                                       metavar="DATA_COMMAND")
    validate = data.add_parser("validate", help="check a dataset file and report every problem by row")
    validate.add_argument("file", type=Path, help="CSV, JSONL or JSON dataset file")
    validate.add_argument("--template-mode", default="auto",
                          help="auto, column, chat, dialogplus, messages, sharegpt or alpaca (default auto)")
    validate.add_argument("--model", type=Path, help="model folder whose tokenizer measures token lengths")
    validate.add_argument("--chunk-size", type=int, default=1024, help="maximum sequence length (default 1024)")
    validate.add_argument("--column-name", default="text", help="text column for the column format")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(func=cmd_data_validate)

    ngrams = sub.add_parser("ngrams", help="n-gram vocabulary tools").add_subparsers(
        dest="ngrams_command", required=True, metavar="NGRAMS_COMMAND")
    mine = ngrams.add_parser("mine", help="show the phrases use_ngrams would add and the compression they give")
    mine.add_argument("dataset", type=Path, help="CSV, JSONL or JSON dataset file")
    mine.add_argument("--model", type=Path, required=True, help="model folder whose tokenizer is extended")
    add_model_options(mine, NgramOptions)  # the same options and defaults as a run's `ngrams`
    mine.add_argument("--template-mode", default="auto",
                      help="auto, column, chat, dialogplus, messages, sharegpt or alpaca (default auto)")
    mine.add_argument("--column-name", default="text", help="text column for the column format")
    mine.add_argument("--show", type=int, default=30, help="phrases listed (default 30)")
    mine.add_argument("--json", action="store_true", help="print totals and every phrase as JSON")
    mine.set_defaults(func=cmd_ngrams_mine)

    train = sub.add_parser("train", help="run a training job in the foreground with a progress bar")
    train.add_argument("config", type=Path, nargs="?", help="TrainConfig as YAML or JSON (see examples/); its "
                       "fields override the preset's")
    train.add_argument("--preset", help="start from a preset saved in the dashboard (presets/NAME.json)")
    train.add_argument("--home", type=Path, help="folder holding datasets/, training_outputs/, models/")
    add_model_options(train, TrainConfig)  # every field, over the config file's and the preset's
    train.set_defaults(func=cmd_train)

    export = sub.add_parser("export", help="export a run as a clean HF folder, its LoRA adapter, or GGUF + "
                            "Ollama Modelfile, verified against the lab's model")
    export.add_argument("run", help="run id (folder name under training_outputs/)")
    export.add_argument("--format", required=True, choices=["hf", "adapter", "gguf"], help="what to write")
    export.add_argument("--quant", choices=["f16", "q8_0"], help="GGUF weight type (default f16)")
    export.add_argument("--out", help="output folder under home (default training_outputs/RUN/exports/NAME)")
    export.add_argument("--home", type=Path, help="folder holding datasets/, training_outputs/, models/")
    export.add_argument("--json", action="store_true", help="print the export record as JSON")
    export.set_defaults(func=cmd_export)

    ev = sub.add_parser("eval", help="run lm-evaluation-harness on a model (shipped local tasks, a run's "
                        "held-out probes) and store the result")
    ev.add_argument("model", help="model folder under models/ or a run under training_outputs/ (home-relative)")
    ev.add_argument("--tasks", required=True, help="comma-separated: matelix_general_en, matelix_general_de, "
                    "heldout (the run's probes) or heldout:<run_id>")
    ev.add_argument("--limit", type=int, help="items per task at most")
    ev.add_argument("--backend", choices=["hf", "api"], default="hf", help="hf: in-process (default); api: "
                    "through the lab's /v1/completions, started in this process")
    ev.add_argument("--home", type=Path, help="folder holding datasets/, training_outputs/, models/")
    ev.add_argument("--json", action="store_true", help="print the result record as JSON")
    ev.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    return args.func(args)
