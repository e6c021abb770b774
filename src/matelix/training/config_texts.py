"""German help texts of every `TrainConfig` field (nested ones as `ngrams.max_len`), put into its JSON schema as `x-description-de`.

The dashboard builds its training form from that schema (in /openapi.json) and shows the English
`description` or this text, following the UI language. A field without a German text keeps the English
one; a test names every field still missing here.
"""

from __future__ import annotations

GERMAN_DESCRIPTIONS: dict[str, str] = {
    "model_dir": "Modellordner unter models/ oder training_outputs/ oder eine Hugging-Face-Modell-ID "
                 "(nicht im Offline-Betrieb).",
    "csv_path": "Datensatz-Datei unter datasets/ (CSV, JSONL oder JSON).",
    "template_mode": "Wie die Datei gelesen wird; auto = an ihren Spalten oder Schlüsseln erkennen.",
    "column_name": "Spalte mit dem Text, für Dateien mit einem Text pro Zeile.",
    "chat_template": "auto = das Chat-Template des Modells behalten (MaTeLiX, wenn es keines hat); "
                     "matelix = immer das MaTeLiX-Template einsetzen.",
    "train_on_prompt": "Auf allen Tokens trainieren, nicht nur auf der letzten Antwort.",
    "device": "auto = CUDA, sonst MPS, sonst CPU.",
    "precision": "Zahlenformat der Gewichte beim Training; auto = bf16, wo unterstützt, fp32 auf der CPU.",
    "train_mode": "Alle Gewichte trainieren (volles Fine-Tuning) oder nur LoRA-Adapter.",
    "nproc": "Prozesse für verteiltes Training (DDP); mehr als 1 startet torchrun.",
    "gradient_checkpointing": "Spart Aktivierungsspeicher auf Kosten von Rechenzeit.",
    "tokens_per_pass": "Teilt jeden Batch in Vorwärts-/Rückwärtsdurchläufe mit höchstens so vielen Tokens: "
    "gleiche Gradienten, Aktivierungsspeicher nur eines Durchlaufs. Standard: 512 auf der CPU, ganze Batches "
    "auf einer GPU.",
    "learning_rate": "Höchste Lernrate (nach dem Warm-up).",
    "per_device_train_batch_size": "Zeilen pro Gerät und Mikroschritt.",
    "gradient_accumulation_steps": "Mikroschritte pro Optimierungsschritt (effektive Batchgröße = "
                                   "Batchgröße × dieser Wert).",
    "num_train_epochs": "Durchläufe über die Trainingsdaten.",
    "max_steps": "Nach so vielen Optimierungsschritten aufhören (hat Vorrang vor den Epochen).",
    "lr_scheduler": "Wie sich die Lernrate über das Training ändert.",
    "warmup_ratio": "Anteil der Schritte, in denen die Lernrate linear ansteigt.",
    "weight_decay": "Zieht die Gewichte Richtung null (AdamW); 0 = aus.",
    "max_grad_norm": "Norm, auf die Gradienten gekappt werden (0 = aus).",
    "seed": "Startwert für Initialisierung, Mischen und die Eval-Aufteilung (0 bis 2**32 - 1).",
    "chunk_size": "Längere Beispiele werden auf so viele Tokens gekürzt; kürzere zusammengepackt oder aufgefüllt.",
    "packing": "Beispiele zu Zeilen der maximalen Sequenzlänge zusammenpacken (kein Padding, keine "
               "Attention über Beispielgrenzen).",
    "shuffle": "Trainingsbeispiele mischen (mit dem Seed).",
    "sort_by_length": "Beispiele ähnlicher Länge zusammen gruppieren.",
    "eval_split": "Anteil der Unterhaltungen, die für die Evaluation zurückgehalten werden.",
    "eval_steps": "Alle N Schritte evaluieren (sonst bei jedem Checkpoint).",
    "probe_file": "JSONL-Datei unter datasets/ mit Prompts, die das Modell vor dem Training, an jedem Checkpoint "
                  "und am Ende beantwortet (`messages` oder `prompt`, optional `expected`); sonst die "
                  "zurückgehaltenen Prompts.",
    "max_probes": "Höchstens so viele Prompts pro Evaluation.",
    "probe_max_new_tokens": "Länge jeder Prompt-Antwort in Tokens.",
    "early_stopping_patience": "Nach so vielen Evaluationen ohne niedrigeren Eval-Loss aufhören (braucht "
                               "eval_split).",
    "load_best_model_at_end": "Das fertige Modell ist der Checkpoint mit dem niedrigsten Eval-Loss (braucht "
                              "eval_split; save_steps muss ein Vielfaches der Eval-Schritte sein).",
    "save_steps": "Alle N Optimierungsschritte einen Checkpoint schreiben.",
    "save_total_limit": "So viele Checkpoints behalten (die ältesten werden gelöscht); leer = alle.",
    "logging_steps": "Alle N Optimierungsschritte eine Metrikzeile schreiben.",
    "preview_steps": "Alle N Schritte ein Beispiel für die Live-Vorschau erzeugen (0 = nie).",
    "preview_prompt": "Nachricht, auf die die Live-Vorschau antwortet.",
    "preview_max_new_tokens": "Länge des Vorschau-Beispiels in Tokens.",
    "lora_r": "Rang der Adapter-Matrizen: höher passt mehr an und braucht mehr Speicher (8 bis 64 ist üblich).",
    "lora_alpha": "Skaliert die Änderung des Adapters (Alpha / Rang); oft das Doppelte des Rangs.",
    "lora_dropout": "Anteil der Adapter-Eingaben, der beim Training weggelassen wird (gegen Überanpassung).",
    "lora_target_modules": "Namen der anzupassenden Module; leer = jede lineare Schicht außer dem Ausgabekopf.",
    "merge_lora_on_save": "Ein zusammengeführtes volles Modell speichern (sonst Adapter + Verweis aufs Basismodell).",
    "use_ngrams": "Häufige Wortfolgen finden und vor dem Training als Tokens hinzufügen.",
    "ngrams": "Wie die Wortfolgen gesucht werden (mit use_ngrams).",
    "ngrams.max_len": "Längste Wortfolge in Tokens.",
    "ngrams.top_k": "Höchstens so viele Wortfolgen hinzufügen.",
    "ngrams.min_count": "So oft muss eine Wortfolge mindestens vorkommen.",
    "ngrams.min_chars": "Kürzeste Wortfolge in Zeichen.",
    "ngrams.max_samples": "Höchstens so viele Beispiele durchsuchen.",
    "ngrams.screen_tokens": "So viele Tokens der Texte liest das Modell, um jede Wortfolge zu prüfen: nur "
                            "Wortfolgen, die es besser vorhersagt als ihre Teile, kommen hinzu (0 = keine Prüfung).",
    "nnodes": "Beteiligte Rechner; mehr als 1 = ein Lauf über mehrere Rechner, denen die anderen mit "
              "`matelix train CONFIG --node-rank K` beitreten.",
    "node_rank": "Nummer dieses Rechners im Mehrrechner-Lauf: 0 besitzt den Lauf (Status, Logs, Checkpoints "
                 "und das fertige Modell); gesetzt durch `--node-rank`.",
    "master_addr": "Adresse von Rechner 0, die jeder Rechner erreicht (nötig, wenn nnodes > 1).",
    "master_port": "Port auf Rechner 0, an dem sich die Rechner treffen.",
    "node_timeout_s": "Ein Rechner, der so viele Sekunden nicht beitritt oder nicht mehr antwortet, lässt den "
                      "Lauf scheitern.",
    "distributed": "ddp = eine volle Kopie des Modells je Prozess; fsdp oder deepspeed = Modell, Gradienten und "
                   "Optimizer-Zustand auf die Prozesse verteilt, für Modelle, die nicht auf ein Gerät passen.",
    "deepspeed_stage": "DeepSpeed-ZeRO-Stufe: 2 verteilt Gradienten und Optimizer-Zustand, 3 auch die Gewichte.",
    "offload": "Mit fsdp oder deepspeed: Optimizer-Zustand (mit fsdp oder ZeRO-3 auch die Gewichte) im "
               "CPU-Speicher halten; langsamer, passt für größere Modelle.",
    "run_name": "Ein Name für den Lauf, angezeigt statt seines Ordnernamens (der Ordner bleibt "
                "<Modell>_<Zeit>).",
    "notes": "Freie Notizen zum Lauf; später änderbar.",
    "resume_from": "Eine Lauf-ID (ihr letzter vollständiger Checkpoint) oder `<Lauf-ID>/checkpoint-N`, "
                   "von dem aus weitertrainiert wird.",
}


def german_texts(prefix: str = ""):
    """A pydantic `json_schema_extra` hook that adds `x-description-de` to each property that has a text;
    `prefix` names a nested model's field (`"ngrams."`)."""

    def add(schema: dict, _cls: object = None) -> None:
        for name, prop in schema.get("properties", {}).items():
            text = GERMAN_DESCRIPTIONS.get(prefix + name)
            if text:
                prop["x-description-de"] = text

    return add
