"""Fault injection for processes under test (training workers, `matelix serve`), loaded by Python at start-up
when this folder is on PYTHONPATH. `MATELIX_FAULT=<kind>:<arg>` picks the fault; the first two are hit while
checkpoint-<arg> is being saved:

* `hang-in-trainer-state` — trainer_state.json (the Trainer's last checkpoint file) is half written, the
  file named by MATELIX_FAULT_MARKER is created, and the worker sleeps (the test then kills it with -9);
* `enospc-in-optimizer` — writing optimizer.pt fails part-way with OSError(ENOSPC), as on a full disk;
* `slow-decode` — every forward pass of the inference engine takes <arg> ms longer (a big model's pace), so
  a generation is still running when the test acts on the server.
"""

import os

FAULT = os.environ.get("MATELIX_FAULT", "")

if FAULT.startswith("slow-decode:"):
    import time

    from matelix.inference.engine import Engine

    delay_s = int(FAULT.split(":")[1]) / 1000
    forward = Engine._forward

    def slow_forward(self, *args, **kw):
        time.sleep(delay_s)
        return forward(self, *args, **kw)

    Engine._forward = slow_forward

elif FAULT:
    import errno
    import json
    import time
    from pathlib import Path

    import torch
    from transformers import trainer_callback

    kind, step = FAULT.split(":")
    target = f"checkpoint-{step}"

    if kind == "hang-in-trainer-state":
        save_to_json = trainer_callback.TrainerState.save_to_json

        def half_written(self, json_path):
            if target not in str(json_path):
                return save_to_json(self, json_path)
            text = json.dumps(self.__dict__, default=str)
            Path(json_path).write_text(text[: len(text) // 2])
            Path(os.environ["MATELIX_FAULT_MARKER"]).write_text(str(json_path))
            time.sleep(600)

        trainer_callback.TrainerState.save_to_json = half_written

    elif kind == "enospc-in-optimizer":
        save = torch.save

        def disk_full(obj, f, *args, **kw):
            if target in str(f) and str(f).endswith("optimizer.pt"):
                Path(f).write_bytes(b"\x80\x02partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
            return save(obj, f, *args, **kw)

        torch.save = disk_full
