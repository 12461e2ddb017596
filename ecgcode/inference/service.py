"""``predict.py --serve MODEL``: a local HTTP service that keeps one model loaded.

Endpoints (JSON responses):

* ``POST /predict``: the body is one file, named by ``?name=exam.xml`` or an ``X-Filename``
  header (the name tells the format apart, as on predict.py's command line), or a
  ``multipart/form-data`` body with one or more files. Each file is converted into the data
  contract in a temporary folder (removed afterwards) and predicted. The answer is
  ``{"model", "classes", "results": [...]}`` with one result per exam:
  ``{"file", "classes", "probabilities": {class: p}, "predictions": {class: 0/1}}``
  (``predictions`` when thresholds are known; ``row`` when a file holds several exams;
  ``warnings``: predict.py's one-line input warnings, when there are any, and the warning
  that a model trained only on synthetic ECGs is not diagnostic on other ones), or
  ``{"file", "error": "<one line>"}`` for a file that cannot be read. A bad file never
  stops the service nor the other files of its request: the status is 200 whenever the
  request itself could be read, and 400 (with ``{"error"}``) when it could not.
* ``GET /health`` (or ``/``): the model's file, kind, classes, thresholds, metadata,
  provenance (``ecgcode.model.provenance``) and the amplitude scale it expects (``units_per_mv``;
  every file is brought to it, and a rescaled file's result says so in ``warnings``).

Limits: ``Content-Length`` is required (411), a body over ``max_request_mb`` is refused
before it is read (413), at most ``max_files`` files per request (413), and a client that
stops sending for ``timeout_s`` seconds is disconnected. The service binds to 127.0.0.1
by default; it has no authentication, so another host is allowed with a warning only.
stdlib ``http.server`` (``ThreadingHTTPServer``) and ``email`` (multipart) do the work.
"""

import contextlib
import dataclasses
import email.parser
import email.policy
import ipaddress
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ecgcode.common import ECGInputError, first_line
from ecgcode.data import open_collection
from ecgcode.data.formats.inputs import contract_inputs
from ecgcode.inference.outputs import input_warnings
from ecgcode.inference.predictor import at_model_scale, predict_collection
from ecgcode.model.calibration import calibrate_outputs
from ecgcode.model.provenance import synthetic_model_warning
from ecgcode.model.thresholds import binarize

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_REQUEST_MB = 20.0
DEFAULT_MAX_FILES = 16
DEFAULT_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request limits: body size (MB), files per request, socket timeout (s)."""

    max_request_mb: float = DEFAULT_MAX_REQUEST_MB
    max_files: int = DEFAULT_MAX_FILES
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def max_bytes(self):
        return int(self.max_request_mb * 1e6)


class RequestError(Exception):
    """A request that cannot be served: its HTTP status and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# --- The work of one request -------------------------------------------------------
def safe_name(name):
    """A file name safe to create in a temporary folder (no folders, no odd characters)."""
    base = os.path.basename(str(name).replace("\\", "/")).strip()
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base).lstrip(".")
    return base[:128] or "upload"


def request_files(headers, body, query_name=None):
    """[(name, bytes)] of a request: one named body, or the files of a multipart body.

    Raises
    ------
    RequestError
        400: no file or no name; an unreadable multipart body.
    """
    content_type = headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
        if not message.is_multipart():
            raise RequestError(400, "multipart/form-data body without parts; check the "
                               "boundary in the Content-Type header")
        files = [(part.get_filename(), part.get_payload(decode=True) or b"")
                 for part in message.iter_parts() if part.get_filename()]
        if not files:
            raise RequestError(400, "multipart body without files; send each file as a "
                               "form-data part with a filename")
        return files
    name = query_name or headers.get("X-Filename")
    if not name:
        raise RequestError(400, "no file name; give ?name=exam.xml or an X-Filename header "
                           "(the name tells the format apart), or send multipart/form-data")
    if not body:
        raise RequestError(400, f"{name}: empty body; send the file's bytes")
    return [(name, body)]


def exam_results(name, probabilities, classes, thresholds, warnings=()):
    """The JSON results of one file's exams (see the module docstring).

    A NaN probability (a tracing with NaN/inf samples) and a class without a threshold
    give ``null``; ``warnings`` (predict.py's one-line input warnings) are added to each.
    """
    results = []
    for row, scores in enumerate(probabilities):  # scores: (n_classes,)
        result = {"file": name}
        if len(probabilities) > 1:
            result["row"] = row
        result["classes"] = list(classes)
        result["probabilities"] = {c: float(p) if np.isfinite(p) else None
                                   for c, p in zip(classes, scores)}
        if thresholds is not None:
            result["predictions"] = {
                c: (None if thresholds[c] is None or not np.isfinite(p)
                    else int(binarize(p, thresholds[c])))
                for c, p in zip(classes, scores)}
        if warnings:
            result["warnings"] = list(warnings)
        results.append(result)
    return results


class Service:
    """A loaded predictor and its thresholds, serving requests one file at a time.

    Predictions are serialised by a lock (a Keras model is not thread-safe, and two
    cores are busy with one forward pass anyway); conversions run in parallel.
    """

    def __init__(self, predictor, thresholds=None, limits=Limits(), calibration=None,
                 units_per_mv=None):
        self.predictor = predictor
        self.thresholds = thresholds
        self.limits = limits
        self.calibration = calibration  # validate.py's recalibration, applied to every result
        self.units_per_mv = units_per_mv  # of uploaded HDF5 files that record none
        self._lock = threading.Lock()

    def health(self):
        """The ``GET /health`` answer."""
        return {"status": "ok", "model": os.path.basename(self.predictor.path),
                "kind": self.predictor.kind, "classes": list(self.predictor.classes),
                "thresholds": self.thresholds, "metadata": self.predictor.metadata,
                "provenance": self.predictor.provenance, "calibration": self.calibration,
                "units_per_mv": self.predictor.scale.units_per_mv,
                "limits": dataclasses.asdict(self.limits)}

    def predict_files(self, files):
        """Results of every (name, bytes) file, converted in a temporary folder.

        The files of one request lie side by side, so a WFDB record sent as its ``.hea``
        and its signal file (``.dat``/``.mat``) is converted as one record, named by its
        header; a signal file sent without its header gets the reader's one-line error.
        """
        if len(files) > self.limits.max_files:
            raise RequestError(413, f"{len(files)} files in one request; the limit is "
                               f"{self.limits.max_files} (--max-files)")
        results = []
        with tempfile.TemporaryDirectory(prefix="ecg-service-") as folder:
            written = write_request_files(folder, files)  # [(shown name, path)]
            names = {shown for shown, _ in written}
            for shown, path in written:
                if not is_wfdb_signal_of(shown, names):
                    results.extend(self._predict_file(shown, path))
        return results

    def _predict_file(self, shown, path):
        try:
            with contract_inputs([path]) as (paths, _):
                collection = open_collection(paths, units_per_mv=self.units_per_mv)
                warnings = list(input_warnings(collection))  # units, flat or swapped leads
                synthetic = synthetic_model_warning(self.predictor.provenance,
                                                    os.path.basename(self.predictor.path),
                                                    collection.paths)
                warnings += [synthetic] if synthetic else []
                collection, notes = at_model_scale(self.predictor, collection)
                warnings += notes  # a rescaled file says so
                with self._lock:  # (n, n_classes)
                    probabilities = predict_collection(self.predictor, collection)
        except ECGInputError as error:
            return [{"file": shown, "error": _without_folder(first_line(error), path, shown)}]
        except Exception as error:  # noqa: BLE001 a file must never stop the service
            message = f"{type(error).__name__}: {_without_folder(first_line(error), path, shown)}"
            print(f"error: {shown}: {message}", file=sys.stderr)
            return [{"file": shown, "error": f"cannot read this file ({message})"}]
        probabilities, thresholds = calibrate_outputs(probabilities, self.thresholds,
                                                      self.calibration, self.predictor.classes)
        return exam_results(shown, probabilities, self.predictor.classes, thresholds, warnings)


def _without_folder(message, path, shown):
    """``message`` naming the uploaded file by its name, not by its temporary path."""
    return message.replace(path, shown).replace(os.path.dirname(path) + os.sep, "")


def write_request_files(folder, files):
    """Write (name, bytes) files into ``folder``; return [(safe name, path)] in order.

    Files go side by side (a WFDB header finds its signal file); a name that repeats goes
    into a numbered subfolder of its own.
    """
    written, taken = [], set()
    for number, (name, data) in enumerate(files):
        shown = safe_name(name)
        place = folder if shown not in taken else os.path.join(folder, str(number))
        os.makedirs(place, exist_ok=True)
        path = os.path.join(place, shown)
        with open(path, "wb") as handle:
            handle.write(data)
        taken.add(shown)
        written.append((shown, path))
    return written


def is_wfdb_signal_of(name, names):
    """True for a WFDB signal file (``.dat``/``.mat``) whose ``.hea`` is among ``names``."""
    stem, extension = os.path.splitext(name)
    return extension.lower() in (".dat", ".mat") and f"{stem}.hea" in names


# --- HTTP ---------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    """One HTTP request; ``self.server.service`` does the work."""

    server_version = "ecgcode-predict"
    protocol_version = "HTTP/1.1"

    def setup(self):
        self.timeout = self.server.service.limits.timeout_s  # slow clients: socket timeout
        super().setup()

    def log_request(self, code="-", size="-"):
        pass  # one line per request is written by _answer

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def do_GET(self):
        started = time.monotonic()
        if urlsplit(self.path).path in ("/", "/health"):
            self._answer(200, self.server.service.health(), started)
        else:
            self._answer(404, {"error": f"{self.path}: no such page; use GET /health or "
                               "POST /predict"}, started)

    def do_POST(self):
        started = time.monotonic()
        url = urlsplit(self.path)
        try:
            if url.path != "/predict":
                raise RequestError(404, f"{url.path}: no such endpoint; POST files to /predict")
            body = self._read_body()
            name = (parse_qs(url.query).get("name") or [None])[0]
            files = request_files(self.headers, body, name)
            results = self.server.service.predict_files(files)
        except RequestError as error:
            self._answer(error.status, {"error": str(error)}, started)
            return
        payload = {"model": os.path.basename(self.server.service.predictor.path),
                   "classes": list(self.server.service.predictor.classes),
                   "results": results}
        failed = sum("error" in result for result in results)
        self._answer(200, payload, started, f"{len(files)} file(s), {failed} error(s)")

    def _read_body(self):
        """The request body; RequestError 411/413/400 before reading what is refused."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            self.close_connection = True
            raise RequestError(411, "Content-Length required (chunked bodies are refused)")
        try:
            length = int(length)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"Content-Length {length!r}: not a number") from None
        limit = self.server.service.limits.max_bytes
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise RequestError(413, f"body of {length} bytes over the limit of {limit} "
                               "(--max-request-mb)")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def _answer(self, status, payload, started, detail=""):
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        line = f'"{self.command} {self.path}" {status} {time.monotonic() - started:.3f}s'
        self.log_message("%s", f"{line} {detail}".rstrip())


class Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer that holds the :class:`Service`."""

    daemon_threads = True

    def __init__(self, address, service):
        self.service = service
        super().__init__(address, Handler)


def make_server(service, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Bind the service to ``host:port`` (port 0: any free port); ECGInputError if busy."""
    try:
        return Server((host, port), service)
    except OSError as error:
        raise ECGInputError(f"--host {host} --port {port}: cannot listen there "
                            f"({error.strerror or error}); choose another --port") from None


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(service, host=DEFAULT_HOST, port=DEFAULT_PORT):
    """Serve until Ctrl-C (or SIGTERM); returns 0."""
    if not is_loopback(host):
        print(f"warning: --host {host}: the service is reachable from other machines and has "
              "no authentication; keep it behind a firewall or a reverse proxy",
              file=sys.stderr)
    server = make_server(service, host, port)
    bound_host, bound_port = server.server_address[:2]
    print(f"serving {service.predictor.path} ({service.predictor.kind}) on "
          f"http://{bound_host}:{bound_port} (POST /predict, GET /health; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        with _sigterm_as_interrupt():
            server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops the service as Ctrl-C does (in the main thread; elsewhere no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
