"""predict.py --serve: the HTTP service (ecgcode/inference/service.py) with a small ONNX model.

The service runs in a thread of the test process (port 0: any free port); one test runs
the command line in a subprocess and stops it with Ctrl-C (SIGINT).
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest
from conftest import ROOT, SHARED

from ecgcode.common import CLASSES, PAPER_THRESHOLDS
from ecgcode.inference import service
from ecgcode.inference.predictor import load_predictor

MUSE = SHARED / "ecg-samples" / "formats" / "ge-muse" / "guangxi_teaching_sinus_rhythm.xml"


@pytest.fixture(scope="module")
def onnx_model(small_models):
    return small_models[1]


@pytest.fixture(scope="module")
def server(onnx_model):
    """A running service (paper thresholds; 1 MB and 3 files per request at most)."""
    limits = service.Limits(max_request_mb=1, max_files=3, timeout_s=5)
    running = service.make_server(
        service.Service(load_predictor(onnx_model), dict(PAPER_THRESHOLDS), limits), port=0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


@pytest.fixture(scope="module")
def hdf5_bytes(tmp_path_factory):
    from conftest import write_hdf5

    path = write_hdf5(tmp_path_factory.mktemp("data") / "two.hdf5", 2)
    with open(path, "rb") as handle:
        return handle.read()


def request(server, method, path, body=None, headers=None):
    """(status, JSON answer) of one request."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def multipart(files):
    """(body, content type) of a multipart/form-data upload of (name, bytes) files."""
    boundary = uuid.uuid4().hex
    body = b""
    for number, (name, data) in enumerate(files):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file{number}\"; "
                 f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 ).encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_binds_to_loopback_by_default(server):
    assert server.server_address[0] == "127.0.0.1"
    assert service.is_loopback("127.0.0.1") and service.is_loopback("::1")
    assert service.is_loopback("localhost") and not service.is_loopback("0.0.0.0")


def test_health_names_the_model(server):
    status, answer = request(server, "GET", "/health")
    assert status == 200
    assert answer["model"] == "small.onnx" and answer["kind"] == "onnx"
    assert answer["classes"] == list(CLASSES) and answer["thresholds"] == PAPER_THRESHOLDS
    assert json.loads(answer["metadata"]["classes"]) == list(CLASSES)


def test_one_hdf5_file_gives_one_result_per_exam(server, hdf5_bytes):
    status, answer = request(server, "POST", "/predict?name=two.hdf5", hdf5_bytes)
    assert status == 200
    results = answer["results"]
    assert [result["row"] for result in results] == [0, 1]
    for result in results:
        assert result["file"] == "two.hdf5" and list(result["probabilities"]) == list(CLASSES)
        assert all(0 <= p <= 1 for p in result["probabilities"].values())
        assert result["predictions"] == {
            name: int(result["probabilities"][name] > PAPER_THRESHOLDS[name]) for name in CLASSES}
    assert results[0]["probabilities"] != results[1]["probabilities"]


@pytest.mark.skipif(not MUSE.is_file(), reason=f"the example GE MUSE file is not at {MUSE}")
def test_a_clinical_file_named_by_header(server, onnx_model):
    data = MUSE.read_bytes()
    status, answer = request(server, "POST", "/predict", data, {"X-Filename": MUSE.name})
    assert status == 200
    (result,) = answer["results"]
    assert result["file"] == MUSE.name and "row" not in result
    expected = load_predictor(onnx_model)  # the same file through predict.py's conversion
    from ecgcode.data import open_collection
    from ecgcode.data.formats.inputs import contract_inputs
    from ecgcode.inference.predictor import predict_collection

    with contract_inputs([MUSE]) as (paths, _):
        scores = predict_collection(expected, open_collection(paths))[0]
    assert [result["probabilities"][name] for name in CLASSES] == pytest.approx(scores, abs=1e-6)


CINC = SHARED / "ecg-samples" / "cinc2021" / "G12EC"


@pytest.mark.skipif(not (CINC / "E00001.hea").is_file(),
                    reason=f"the example CinC 2021 records are not in {CINC}")
def test_a_wfdb_record_sent_as_header_and_signal_is_one_record(server, onnx_model):
    from ecgcode.data import open_collection
    from ecgcode.data.formats.inputs import contract_inputs
    from ecgcode.inference.predictor import predict_collection

    files = [(name, (CINC / name).read_bytes()) for name in ("E00001.hea", "E00001.mat")]
    files.append(("E00002.mat", (CINC / "E00002.mat").read_bytes()))  # without its header
    body, content_type = multipart(files)
    status, answer = request(server, "POST", "/predict", body, {"Content-Type": content_type})
    assert status == 200
    record, lone = answer["results"]
    assert record["file"] == "E00001.hea" and lone["file"] == "E00002.mat"
    with contract_inputs([CINC / "E00001.hea"]) as (paths, _):
        scores = predict_collection(load_predictor(onnx_model), open_collection(paths))[0]
    assert [record["probabilities"][name] for name in CLASSES] == pytest.approx(scores,
                                                                              abs=1e-6)
    assert lone["error"].startswith("E00002.mat: ") and "ecg-service" not in lone["error"]


def test_a_bad_file_is_one_error_line_and_the_service_goes_on(server, hdf5_bytes):
    status, answer = request(server, "POST", "/predict?name=exam.xml", os.urandom(500))
    assert status == 200
    (result,) = answer["results"]
    assert result["file"] == "exam.xml" and "\n" not in result["error"]
    assert "exam.xml" in result["error"] and "/tmp" not in result["error"]
    assert request(server, "POST", "/predict?name=two.hdf5", hdf5_bytes)[0] == 200


def test_multipart_good_and_bad(server, hdf5_bytes):
    body, content_type = multipart([("bad.xml", b"<not an ecg/>"), ("two.hdf5", hdf5_bytes),
                                    ("../../etc/evil.hdf5", b"garbage")])
    status, answer = request(server, "POST", "/predict", body, {"Content-Type": content_type})
    assert status == 200
    files = [result["file"] for result in answer["results"]]
    assert files == ["bad.xml", "two.hdf5", "two.hdf5", "evil.hdf5"]
    assert "error" in answer["results"][0] and "error" in answer["results"][3]
    assert "probabilities" in answer["results"][1]


def test_too_many_files_refused(server):
    body, content_type = multipart([(f"f{k}.xml", b"x") for k in range(4)])
    status, answer = request(server, "POST", "/predict", body, {"Content-Type": content_type})
    assert status == 413 and "limit is 3" in answer["error"]


def receive_reply(raw):
    """The whole HTTP reply on a raw socket: headers, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += raw.recv(65536) or b"\r\n\r\n"  # a closed socket ends the headers
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    while length and len(body) < int(length.group(1)):
        chunk = raw.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_too_large_refused_before_reading(server):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(b"POST /predict?name=big.xml HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: 10000000\r\n\r\n")  # the body is never sent
        reply = receive_reply(raw)
    assert reply.startswith("HTTP/1.1 413") and "over the limit" in reply


def test_no_length_refused(server):
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(b"POST /predict?name=a.xml HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
        reply = receive_reply(raw)
    assert reply.startswith("HTTP/1.1 411")


@pytest.mark.parametrize("path, headers, status", [
    ("/predict", {}, 400),  # no file name
    ("/elsewhere", {}, 404),
])
def test_malformed_requests(server, path, headers, status):
    assert request(server, "POST", path, b"data", headers)[0] == status


def test_command_line_serves_and_stops_on_ctrl_c(onnx_model):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "predict.py"), "--serve", onnx_model, "--port", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = process.stderr.readline()
        assert "on http://127.0.0.1:" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
        connection.close()
        assert "GET /health" in process.stderr.readline()  # one log line per request
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()


def test_command_line_refuses_tracings_with_serve(onnx_model, capsys):
    from conftest import run_main

    from ecgcode.cli import predict

    status, _, err = run_main(predict.main, ["--serve", "x.hdf5", onnx_model], capsys)
    assert status == 2 and "--serve takes one positional argument" in err


def test_multipart_keeps_binary_files_byte_for_byte():
    files = [(f"f{k}.bin", os.urandom(5000) + b"\r\n--boundary\r\n\n\r" + os.urandom(50))
             for k in range(3)]
    body, content_type = multipart(files)
    assert service.request_files({"Content-Type": content_type}, body) == files


def test_a_keras_model_serves_the_same_probabilities(small_models, server, hdf5_bytes):
    keras_server = service.make_server(service.Service(load_predictor(small_models[0])), port=0)
    thread = threading.Thread(target=keras_server.serve_forever, daemon=True)
    thread.start()
    try:
        status, from_keras = request(keras_server, "POST", "/predict?name=two.hdf5", hdf5_bytes)
    finally:
        keras_server.shutdown()
        keras_server.server_close()
    assert status == 200 and len(from_keras["results"]) == 2
    from_onnx = request(server, "POST", "/predict?name=two.hdf5", hdf5_bytes)[1]
    for keras_result, onnx_result in zip(from_keras["results"], from_onnx["results"]):
        assert "predictions" not in keras_result  # no thresholds given to this one
        assert list(keras_result["probabilities"].values()) == pytest.approx(
            list(onnx_result["probabilities"].values()), abs=1e-4)


def test_nan_tracings_and_input_warnings_reach_the_answer(server, tmp_path):
    from conftest import synthetic_tracings, write_hdf5

    x = synthetic_tracings(2) * 0.2  # (2, 4096, 12) 5x below the contract's UNITS_PER_MV
    x[1, 100:200, 3] = np.nan
    path = write_hdf5(tmp_path / "small.hdf5", 2, data=x)
    with open(path, "rb") as handle:
        status, answer = request(server, "POST", "/predict?name=small.hdf5", handle.read())
    assert status == 200
    first, second = answer["results"]
    assert all(value is not None for value in first["probabilities"].values())
    assert set(second["probabilities"].values()) == {None}
    assert set(second["predictions"].values()) == {None}
    assert any("5x too small" in warning for warning in first["warnings"]), first["warnings"]


def test_another_host_is_warned_about_and_ctrl_c_returns_0(onnx_model, monkeypatch, capsys):
    class Interrupted:
        server_address = ("0.0.0.0", 8000)
        closed = False

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            Interrupted.closed = True

    monkeypatch.setattr(service, "make_server", lambda *args: Interrupted())
    assert service.serve(service.Service(load_predictor(onnx_model)), "0.0.0.0", 8000) == 0
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0: the service is reachable from other machines" in err
    assert Interrupted.closed and "stopped" in err.splitlines()  # (other tests' server logs
    # may land here too: a request is logged after its answer is sent)


def test_a_silent_client_is_disconnected(onnx_model):
    limits = service.Limits(timeout_s=0.5)
    quick = service.make_server(service.Service(load_predictor(onnx_model), None, limits), port=0)
    thread = threading.Thread(target=quick.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(quick.server_address[:2], timeout=30) as raw:
            raw.sendall(b"POST /predict?name=a.xml HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
            assert raw.recv(65536) == b""  # closed by the server, the body never completed
    finally:
        quick.shutdown()
        quick.server_close()


def test_each_request_leaves_no_temporary_files(server, hdf5_bytes):
    import glob
    import tempfile

    def leftovers():
        return {path for prefix in ("ecg-service-", "ecg-predict-")
                for path in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*"))}

    before = leftovers()
    body, content_type = multipart([("two.hdf5", hdf5_bytes), ("bad.xml", b"<x/>")])
    assert request(server, "POST", "/predict", body, {"Content-Type": content_type})[0] == 200
    assert leftovers() <= before
