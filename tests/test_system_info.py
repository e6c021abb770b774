"""Live usage figures: the first CPU reading of a busy machine is not the meaningless 0.0 psutil gives
for a first call."""

import subprocess
import sys

from matelix import system_info


def test_the_first_cpu_reading_sees_a_busy_cpu(monkeypatch):
    monkeypatch.setattr(system_info, "_cpu_read_at", None)  # as in a freshly started server
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import psutil

        psutil.cpu_percent(interval=0.5)  # let the busy loop get going
        psutil.cpu_percent(interval=None)  # psutil's own baseline is now "just now"
        assert system_info.cpu_percent() > 5.0
        assert system_info.sysstatus()["cpu_percent"] >= 0.0
    finally:
        busy.kill()
        busy.wait()
