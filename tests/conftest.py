"""Test session isolation: caches go to a temporary folder, nothing reaches the network."""

import os
import tempfile

_tmp = tempfile.mkdtemp(prefix="ft-tests-")
os.environ["HF_HOME"] = os.path.join(_tmp, "hf")
os.environ["FT_CACHE"] = os.path.join(_tmp, "ft")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
