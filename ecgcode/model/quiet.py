"""Keep TensorFlow's start-up noise out of the user's terminal.

Measured with TensorFlow 2.21 on a CPU-only machine: ``import tensorflow`` writes six
lines to file descriptor 2 from C++ *before* absl's logging is initialised (absl's
``WARNING: All log messages before absl::InitializeLog() ...``, ``oneDNN custom operations
are on``, ``Could not find cuda drivers``, twice), and no environment variable silences
them (``TF_CPP_MIN_LOG_LEVEL=3``, ``GLOG_minloglevel``, ``ABSL_MIN_LOG_LEVEL`` tried).
``TF_CPP_MIN_LOG_LEVEL=3`` does silence what comes after the import (``cpu_feature_guard``,
``failed call to cuInit``). So :func:`import_tensorflow` sets that variable (unless the
user did) and imports TensorFlow with fd 2 redirected to a temporary file, then replays
every line of it that is not absl-formatted info/warning noise: real errors still show.

:func:`lazy_module` defers a module's import (and with it TensorFlow's) to its first use,
so that scripts validate their inputs before paying for TensorFlow.
"""

import contextlib
import importlib
import importlib.util
import os
import re
import sys
import tempfile

NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]"  # absl info/warning lines
    r"|To enable the following instructions:)"
)
"""Start-up lines dropped by :func:`import_tensorflow` (absl errors and fatals are kept)."""


def is_noise(line):
    """True for a TensorFlow start-up line that :func:`import_tensorflow` drops."""
    return bool(NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr():
    """Capture file descriptor 2 (C++ and Python writes) and replay its non-noise lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if not is_noise(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def import_tensorflow(verbose=False):
    """Import TensorFlow (and Keras) without its start-up noise; return the tensorflow module.

    Parameters
    ----------
    verbose : bool
        Show TensorFlow's start-up logging as it is (the ``--verbose`` option of the
        scripts); ``TF_CPP_MIN_LOG_LEVEL`` is then left as it is.

    Returns
    -------
    module
        ``tensorflow``. Calling again is cheap: the modules are already imported.
    """
    if "tensorflow" not in sys.modules or "keras" not in sys.modules:
        if not verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with contextlib.nullcontext() if verbose else filtered_stderr():
            importlib.import_module("tensorflow")
            importlib.import_module("keras")
    return sys.modules["tensorflow"]


def lazy_module(name):
    """The module ``name``, imported on the first access to one of its attributes.

    Returns the module itself when it is already imported.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
