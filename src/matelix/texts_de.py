"""German texts for `matelix.texts.tr`: English template -> German template with the same placeholders
(tests/test_texts.py checks both, and that every template the code uses has its German entry)."""

GERMAN: dict[str, str] = {
    # paths.py: a user-given path confined to the allowed folders
    "path is empty": "der Pfad ist leer",
    "path contains a NUL byte": "der Pfad enthält ein NUL-Byte",
    "path is too long": "der Pfad ist zu lang",
    "path cannot be resolved: {reason}": "der Pfad lässt sich nicht auflösen: {reason}",
    "path {path!r} is outside the allowed folders": "der Pfad {path!r} liegt außerhalb der erlaubten Ordner",
    # catalog.py: model names
    "no model named {ref!r} (not a run id, nor a folder under models/ or training_outputs/)":
        "kein Modell namens {ref!r} (weder eine Lauf-ID noch ein Ordner unter models/ oder training_outputs/)",
    "{ref!r} is not a model folder (no config.json or adapter_config.json)":
        "{ref!r} ist kein Modellordner (keine config.json oder adapter_config.json)",
    "model {ref!r} is not a local model, and hub downloads are off (MATELIX_OFFLINE)":
        "Modell {ref!r} liegt nicht lokal vor, und Downloads vom Hub sind abgeschaltet (MATELIX_OFFLINE)",
    # server/errors.py: the common error answers
    "unknown field '{field}'": "unbekanntes Feld '{field}'",
    "no route for {method} {path}": "keine Route für {method} {path}",
    "malformed JSON body: {reason}": "fehlerhafter JSON-Body: {reason}",
    "method {method} is not allowed on {path}": "Methode {method} ist auf {path} nicht erlaubt",
    "cannot write: {reason} (free some disk space and retry)":
        "Schreiben nicht möglich: {reason} (Speicherplatz freigeben und erneut versuchen)",
    # server/routes/datasets.py: validation, preview, upload
    "{param}: no dataset {name!r} under datasets/": "{param}: kein Datensatz {name!r} unter datasets/",
    "model: {model!r} is not a local model folder": "model: {model!r} ist kein lokaler Modellordner",
    "model: the tokenizer of {model!r} cannot be loaded: {reason}":
        "model: der Tokenizer von {model!r} lässt sich nicht laden: {reason}",
    "name: {name!r} is not a plain file name (no folders, no NUL)":
        "name: {name!r} ist kein einfacher Dateiname (keine Ordner, kein NUL)",
    "name: {name!r} must end in {suffixes}": "name: {name!r} muss auf {suffixes} enden",
    "name: file name is too long": "name: der Dateiname ist zu lang",
    "name: {name!r} already exists under datasets/ (send overwrite=true to replace it)":
        "name: {name!r} gibt es unter datasets/ schon (mit overwrite=true wird die Datei ersetzt)",
    "request body is larger than the limit of {mib} MiB": "der Request-Body ist größer als die Grenze von {mib} MiB",
    "file is larger than the upload limit of {mib} MiB": "die Datei ist größer als die Upload-Grenze von {mib} MiB",
    "file: the uploaded file is empty": "file: die hochgeladene Datei ist leer",
    "file: {name!r} cannot be read as {suffix}: {reason}": "file: {name!r} lässt sich nicht als {suffix} lesen: {reason}",
    "it is not UTF-8 text": "sie ist kein UTF-8-Text",
    "it has no data rows below the header": "sie hat unter der Kopfzeile keine Datenzeilen",
    "it has only blank lines, no record (expected one JSON object per line)":
        "sie hat nur leere Zeilen, keinen Datensatz (erwartet: ein JSON-Objekt pro Zeile)",
    "it is a JSON {type}, not an object or an array of objects":
        "sie ist ein JSON-{type}, kein Objekt und keine Liste von Objekten",
    "it is an empty JSON array, no record": "sie ist eine leere JSON-Liste, ohne Datensatz",
    "the first record is a JSON {type}, not an object (expected one object per line)":
        "der erste Datensatz ist ein JSON-{type}, kein Objekt (erwartet: ein Objekt pro Zeile)",
    "the first record is a JSON {type}, not an object (expected an object or an array of objects)":
        "der erste Datensatz ist ein JSON-{type}, kein Objekt (erwartet: ein Objekt oder eine Liste von Objekten)",
    # server/routes/trainings.py, estimate.py
    "run {run!r} has no evaluation (it needs eval_split or probe_file)":
        "Lauf {run!r} hat keine Evaluation (dafür braucht er einen Anteil für Evaluation oder eine Prüffragen-Datei)",
    "run {run!r} is training; estimate when it has ended":
        "Lauf {run!r} trainiert gerade; die Schätzung ist möglich, wenn er beendet ist",
    "the estimate failed: {reason}": "die Schätzung ist fehlgeschlagen: {reason}",
    "the estimate took longer than {seconds} s": "die Schätzung hat länger als {seconds} s gedauert",
    # training/preflight.py: a run refused before it starts
    "csv_path: dataset {name!r} not found under datasets/": "csv_path: Datensatz {name!r} nicht unter datasets/ gefunden",
    "resume_from: {run!r} is not a run or checkpoint under training_outputs/":
        "resume_from: {run!r} ist kein Lauf und kein Checkpoint unter training_outputs/",
    "resume_from: {run!r} has no complete checkpoint": "resume_from: {run!r} hat keinen vollständigen Checkpoint",
    "model_dir: cannot load a tokenizer from {model!r}: {reason}":
        "model_dir: aus {model!r} lässt sich kein Tokenizer laden: {reason}",
    "csv_path: the dataset yields no training samples": "csv_path: der Datensatz ergibt keine Trainingsbeispiele",
    "row {row}: {message}": "Zeile {row}: {message}",
    "eval_split: the dataset has a single thread; nothing can be held out":
        "eval_split: der Datensatz hat nur einen Gesprächsfaden; nichts kann für die Evaluation zurückgehalten werden",
    "too many runs started in the same second": "zu viele Läufe in derselben Sekunde gestartet",
    "run {run!r} is {state}; only {states} runs can be resumed":
        "Lauf {run!r} ist im Zustand {state}; fortsetzen lassen sich nur Läufe im Zustand {states}",
    "run {run!r} has no complete checkpoint to resume from":
        "Lauf {run!r} hat keinen vollständigen Checkpoint, von dem er fortgesetzt werden kann",
    # data/readers.py, load.py, threads.py, validate.py: findings in a dataset file
    "none": "keine",
    "{file}: cannot read file ({reason})": "{file}: die Datei lässt sich nicht lesen ({reason})",
    "{file}: line {line} is not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); save the file as UTF-8":
        "{file}: Zeile {line} ist kein gültiges UTF-8 (Byte 0x{byte:02x} an Position {offset}); speichere die Datei "
        "als UTF-8",
    "{file}: the file is empty (no header row)": "{file}: die Datei ist leer (keine Kopfzeile)",
    "{file}: bad CSV quoting in data row {row} (line {line}): {reason}":
        "{file}: fehlerhafte CSV-Anführungszeichen in Datenzeile {row} (Dateizeile {line}): {reason}",
    "{file}: not valid JSON: {reason}": "{file}: kein gültiges JSON: {reason}",
    "{file}: line {line} (record {row}) is not valid JSON: {reason}":
        "{file}: Zeile {line} (Datensatz {row}) ist kein gültiges JSON: {reason}",
    "line {line} is nested too deeply (more than {depth} levels of arrays/objects); not a dataset record":
        "Zeile {line} ist zu tief verschachtelt (mehr als {depth} Ebenen von Listen/Objekten); kein Datensatz",
    "line {line} (record {row}) is nested too deeply (more than {depth} levels of arrays/objects); not a dataset "
    "record":
        "Zeile {line} (Datensatz {row}) ist zu tief verschachtelt (mehr als {depth} Ebenen von Listen/Objekten); "
        "kein Datensatz",
    "{file}: a JSON dataset must be a list of records": "{file}: ein JSON-Datensatz muss eine Liste von Einträgen sein",
    "unknown template_mode {mode!r}; use one of {modes}": "unbekanntes Datensatz-Format {mode!r}; möglich sind {modes}",
    "{file}: unsupported file type {suffix!r}; use {suffixes} (Parquet is not supported)":
        "{file}: Dateityp {suffix!r} wird nicht unterstützt; möglich sind {suffixes} (Parquet nicht)",
    "{file}: no such dataset file": "{file}: diese Datensatz-Datei gibt es nicht",
    "{file}: template_mode {mode!r} needs a JSONL or JSON file, not CSV":
        "{file}: das Datensatz-Format {mode!r} braucht eine JSONL- oder JSON-Datei, keine CSV",
    "{file}: missing column {column!r} with the text (found columns: {found}); name the column that holds the "
    "text (column_name), or use the columns of a chat format":
        "{file}: die Spalte {column!r} mit dem Text fehlt (gefundene Spalten: {found}); gib unter „Textspalte“ die "
        "Spalte mit dem Text an, oder verwende die Spalten eines Chat-Formats",
    "{file}: missing required column(s) {missing} for a threaded chat CSV (found: {found})":
        "{file}: für eine Chat-CSV mit Gesprächsfäden fehlen die Pflichtspalten {missing} (gefunden: {found})",
    "has {fields} fields, the header has {width} (check the quoting)":
        "hat {fields} Felder, die Kopfzeile hat {width} (prüfe die Anführungszeichen)",
    "empty {column!r}: the row produces no sample": "{column!r} ist leer: die Zeile ergibt kein Beispiel",
    "empty {column!r}: the record produces no sample": "{column!r} ist leer: der Eintrag ergibt kein Beispiel",
    "record is a {type}, not an object; skipped": "der Eintrag ist ein {type}, kein Objekt; übersprungen",
    "the record is nested too deeply; skipped": "der Eintrag ist zu tief verschachtelt; übersprungen",
    "{where} must be text, not {type}; skipped": "{where} muss Text sein, nicht {type}; übersprungen",
    "no {column!r} field; skipped": "kein Feld {column!r}; übersprungen",
    "{key!r} must be a list of messages; skipped": "{key!r} muss eine Liste von Nachrichten sein; übersprungen",
    "{key}[{k}] is not an object; skipped": "{key}[{k}] ist kein Objekt; übersprungen",
    "{key}[{k}] has unknown {role_key} {role!r} (use system, user or assistant); skipped":
        "{key}[{k}] hat die unbekannte Rolle ({role_key}) {role!r} (möglich sind system, user oder assistant); "
        "übersprungen",
    "no non-empty assistant answer: the record produces no sample":
        "keine nicht-leere Antwort des Assistenten: der Eintrag ergibt kein Beispiel",
    "empty id: no row can reply to this one": "leere id: keine Zeile kann auf diese antworten",
    "duplicate id {id!r} (first used in row {first}); replies link to the first":
        "doppelte id {id!r} (zuerst in Zeile {first}); Antworten beziehen sich auf die erste",
    "parent_id {id!r} does not exist; the row starts its own thread":
        "parent_id {id!r} gibt es nicht; die Zeile beginnt einen eigenen Gesprächsfaden",
    "parent_id chain forms a cycle (rows {rows}); skipped":
        "die parent_id-Kette bildet einen Kreis (Zeilen {rows}); übersprungen",
    "its thread leads into a parent_id cycle (at row {row}); skipped":
        "ihr Gesprächsfaden führt in einen parent_id-Kreis (bei Zeile {row}); übersprungen",
    "thread deeper than {n} messages; the oldest turns are left out from here on":
        "Gesprächsfaden tiefer als {n} Nachrichten; ab hier fehlen die ältesten Beiträge",
    "empty Assistentin answer and no replies: the row produces no sample":
        "leere Antwort in Assistentin und keine Antworten darauf: die Zeile ergibt kein Beispiel",
    "the file produces no training samples": "die Datei ergibt keine Trainingsbeispiele",
    # training/jobs.py: runs refused, and why a run ended without its own final state
    "run_id {run!r} must be a run folder name": "run_id {run!r} muss der Name eines Lauf-Ordners sein",
    "no training run {run!r}": "kein Trainingslauf {run!r}",
    "run {run!r} is active; stop it first (POST /stop)": "Lauf {run!r} ist aktiv; stoppe ihn zuerst (POST /stop)",
    "no training run is active": "kein Trainingslauf ist aktiv",
    "run {run!r} is running; stop it before deleting": "Lauf {run!r} läuft; stoppe ihn vor dem Löschen",
    "worker did not stop within {seconds:g} s and was killed":
        "der Worker hat nicht innerhalb von {seconds:g} s angehalten und wurde beendet",
    "worker ended without a final state (exit code {code})":
        "der Worker endete ohne Endzustand (Exit-Code {code})",
    "worker ended without a final state": "der Worker endete ohne Endzustand",
    # server/routes/catalog.py, models/gguf_import.py: the Train view's GGUF import
    "name: letters, digits, '.', '_' and '-' only": "name: nur Buchstaben, Ziffern, '.', '_' und '-'",
    "file: {file!r} is not a .gguf file under models/": "file: {file!r} ist keine .gguf-Datei unter models/",
    "models/{name} exists already": "models/{name} gibt es schon",
    "another GGUF import is running; try again when it has finished":
        "ein anderer GGUF-Import läuft; versuche es erneut, wenn er fertig ist",
    "{file}: not a readable GGUF file ({reason})": "{file}: keine lesbare GGUF-Datei ({reason})",
    "{file}: architecture {arch!r} is not supported by transformers' GGUF loader (supported: {supported})":
        "{file}: die Architektur {arch!r} unterstützt der GGUF-Lader von transformers nicht (unterstützt: "
        "{supported})",
    # training/config.py: settings that do not fit together (the form shows them above its buttons)
    "eval_steps is set but eval_split is 0: set eval_split (e.g. 0.1) to evaluate":
        "„Evaluation alle N Schritte“ ist gesetzt, aber der Anteil für Evaluation ist 0: setze ihn (z. B. 0.1), "
        "um zu evaluieren",
    "early_stopping_patience and load_best_model_at_end compare eval losses: set eval_split (e.g. 0.1)":
        "Early Stopping und „bestes Modell am Ende laden“ vergleichen Eval-Losses: setze den Anteil für "
        "Evaluation (z. B. 0.1)",
    "load_best_model_at_end needs save_steps ({save}) to be a multiple of eval_steps ({eval}), so every "
    "checkpoint has an eval loss":
        "„bestes Modell am Ende laden“ braucht ein Speicherintervall ({save}), das ein Vielfaches des "
        "Evaluationsintervalls ({eval}) ist, damit jeder Checkpoint einen Eval-Loss hat",
    "nproc > 1 is not supported on mps; use device cpu or cuda":
        "mehrere Prozesse (nproc > 1) gehen auf mps nicht; verwende cpu oder cuda",
    "precision fp16 needs a GPU; use fp32 or bf16 on cpu": "fp16 braucht eine GPU; verwende auf der CPU fp32 oder bf16",
    "lora_target_modules is empty: give module names or leave it unset":
        "die LoRA-Zielmodule sind leer: gib Modulnamen an oder lass das Feld leer",
    # training/presets.py
    "name: {name!r} is not a preset name (1 to 64 letters, digits, spaces or ._-+(), starting with a letter or "
    "digit)":
        "name: {name!r} ist kein Name für eine Voreinstellung (1 bis 64 Buchstaben, Ziffern, Leerzeichen oder "
        "._-+(), beginnend mit einem Buchstaben oder einer Ziffer)",
    "config: expected an object of TrainConfig fields": "config: erwartet wird ein Objekt mit Feldern von TrainConfig",
    "name: no preset {name!r}": "name: keine Voreinstellung {name!r}",
    "name: preset {name!r} cannot be read: {reason}":
        "name: die Voreinstellung {name!r} lässt sich nicht lesen: {reason}",
    # export/, evaluation/: what the Runs view's export and evaluation panels may be refused with
    "run {run!r} is still training; export it when it has ended":
        "Lauf {run!r} trainiert noch; exportiere ihn, wenn er beendet ist",
    "run {run!r} has no final model to export": "Lauf {run!r} hat kein fertiges Modell zum Exportieren",
    "the run holds no LoRA adapter (a full fine-tune, or an adapter merged on save): export it as hf or gguf":
        "der Lauf enthält keinen LoRA-Adapter (volles Fine-Tuning, oder der Adapter wurde beim Speichern "
        "zusammengeführt): exportiere ihn als hf oder gguf",
    "cannot write the export: {reason}": "der Export lässt sich nicht schreiben: {reason}",
    "an export of {run!r} is running; wait for it to end": "ein Export von {run!r} läuft; warte, bis er fertig ist",
    "an evaluation of {model!r} is running; wait for it to end":
        "eine Evaluation von {model!r} läuft; warte, bis sie fertig ist",
    "model: {model!r} is not a local model folder (evaluation runs offline)":
        "model: {model!r} ist kein lokaler Modellordner (die Evaluation läuft offline)",
    "model: {model!r} holds only a LoRA adapter; evaluate a merged model (merge_lora_on_save, or matelix export "
    "RUN --format hf)":
        "model: {model!r} enthält nur einen LoRA-Adapter; evaluiere ein Modell mit zusammengeführtem Adapter "
        "(„LoRA beim Speichern zusammenführen“, oder matelix export RUN --format hf)",
    "model: {model!r} is not served by the lab (a run must be finished)":
        "model: {model!r} wird vom Lab nicht bereitgestellt (ein Lauf muss dafür beendet sein)",
}

# pydantic's validation errors by their `type`, filled from the error's `ctx` (the English is pydantic's own);
# worded as the dashboard's own checks before sending (`check.*` in ui/strings.js).
PYDANTIC_GERMAN: dict[str, str] = {
    "missing": "Pflichtfeld",
    "value_error": "{error}",  # a validator's own message (already in the request's language), without "Value error, "
    "greater_than": "Muss größer als {gt} sein",
    "greater_than_equal": "Muss mindestens {ge} sein",
    "less_than": "Muss kleiner als {lt} sein",
    "less_than_equal": "Darf höchstens {le} sein",
    "int_parsing": "Bitte eine ganze Zahl eingeben",
    "int_from_float": "Bitte eine ganze Zahl eingeben",
    "int_type": "Bitte eine ganze Zahl eingeben",
    "float_parsing": "Bitte eine gültige Zahl eingeben",
    "float_type": "Bitte eine gültige Zahl eingeben",
    "finite_number": "Bitte eine endliche Zahl eingeben",
    "bool_parsing": "Muss wahr oder falsch sein",
    "bool_type": "Muss wahr oder falsch sein",
    "string_type": "Muss Text sein",
    "string_too_short": "Mindestens {min_length} Zeichen",
    "string_too_long": "Höchstens {max_length} Zeichen",
    "string_pattern_mismatch": "Muss dem Muster {pattern} entsprechen",
    "literal_error": "Muss einer dieser Werte sein: {expected}",
    "enum": "Muss einer dieser Werte sein: {expected}",
    "list_type": "Muss eine Liste sein",
    "dict_type": "Muss ein Objekt sein",
    "too_short": "Mindestens {min_length} Einträge",
    "too_long": "Höchstens {max_length} Einträge",
}
