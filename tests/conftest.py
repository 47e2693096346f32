import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(os.environ.get("AMCT_NB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    if not (SHARED / "efficientnet_lite0.onnx").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have ../shared/data beside the checkout ({SHARED})")
        pytest.skip(f"../shared/data is not next to the checkout ({SHARED})")
    return SHARED
