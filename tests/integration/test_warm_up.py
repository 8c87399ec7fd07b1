"""`serve` loads before its socket opens what the first messages would otherwise load under load:
the council's similarity features (scikit-learn, imported under Python's import lock), the OpenCC
converters and the message catalogues; then it leaves them out of the garbage collector's passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from bot.app import build_services
from bot.settings import Settings
from handlers.replies import catalogue
services = build_services(Settings(database_url=sys.argv[1], secret_key="t"))
import gc
before = ("sklearn.feature_extraction.text" in sys.modules, catalogue.cache_info().currsize, gc.get_freeze_count())
services.pipeline.warm_up()
after = ("sklearn.feature_extraction.text" in sys.modules, catalogue.cache_info().currsize, gc.get_freeze_count())
print(json.dumps([before, after]))
"""


def test_warm_up_loads_the_lazy_parts_a_first_message_would(tmp_path: Path) -> None:
    # A fresh process: in the test process another test may have imported them already.
    out = subprocess.run([sys.executable, "-c", PROBE, f"sqlite:///{tmp_path / 'w.db'}"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    before, after = json.loads(out.strip().splitlines()[-1])
    assert before == [False, 0, 0]
    assert after[:2] == [True, 3]  # the three languages' catalogues
    # What was built until then is out of the collector's full passes (a pause of tens of ms).
    assert after[2] > 100_000

