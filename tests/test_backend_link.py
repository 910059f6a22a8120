"""The add-on's backend link without Blender: endpoints, jobs and the main-thread tick, the
local backend command, all against a real server on a random loopback port."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from conftest import extension_module, unused_loopback_port

link = extension_module("backend_link")


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [("tcp://127.0.0.1:5757", True), ("tcp://127.3.2.1:1", True), ("tcp://[::1]:5757", True),
     ("tcp://localhost:5757", True), ("ipc:///tmp/st", True), ("tcp://192.168.1.20:5757", False),
     ("tcp://render-box.studio:5757", False)],
)  # fmt: skip
def test_loopback_detection(endpoint, loopback):
    assert link.is_loopback(endpoint) is loopback


def test_endpoint_checks_say_what_to_do():
    with pytest.raises(link.UserFacingError, match="tcp://HOST:PORT"):
        link.check_endpoint("127.0.0.1:5757", online_access=True)
    with pytest.raises(link.UserFacingError, match="no port"):
        link.check_endpoint("tcp://127.0.0.1", online_access=True)
    with pytest.raises(link.UserFacingError, match="online access is off"):
        link.check_endpoint("tcp://10.0.0.5:5757", online_access=False)
    link.check_endpoint("tcp://10.0.0.5:5757", online_access=True)
    link.check_endpoint("tcp://127.0.0.1:5757", online_access=False)


def run_job(work, on_done=None, cancel_after: float | None = None) -> link.Job:
    applied_on = []

    def done(job):
        applied_on.append(threading.current_thread())
        if on_done:
            on_done(job)

    job = link.Job("test", work, done)
    link.submit(job)
    if cancel_after is not None:
        time.sleep(cancel_after)
        assert link.cancel_current()
    link.wait(30)
    job.applied_on = applied_on
    return job


def test_results_are_applied_on_the_calling_thread_and_one_job_runs_at_a_time():
    gate = threading.Event()

    def work(job):
        job.progress(0.5, "halfway")
        gate.wait(5)
        return threading.current_thread()

    job = link.Job("slow", work, lambda j: None)
    link.submit(job)
    with pytest.raises(RuntimeError, match="busy"):
        link.submit(link.Job("second", lambda j: None))
    assert link.tick() == link.TICK_SECONDS  # still running: keep ticking
    gate.set()
    link.wait(10)
    assert job.result is not threading.current_thread()  # the work ran on a worker thread
    quick = run_job(lambda j: 42)
    assert quick.applied_on == [threading.current_thread()] and quick.result == 42


def test_errors_and_cancel_become_messages():
    run_job(lambda j: (_ for _ in ()).throw(link.UserFacingError("the file is empty")))
    assert link.last_message == ("ERROR", "the file is empty")

    def slow(job):
        for _ in range(200):
            job.check_cancelled()
            time.sleep(0.01)

    job = run_job(slow, cancel_after=0.05)
    assert job.cancelled and link.last_message[0] == "WARNING" and job.applied_on == []


def test_connect_pings_a_real_server(server):
    info = link.connect(link.Connection(server.endpoint))
    assert info["protocol"] == 1 and "device" in link.describe_backend(info)
    with pytest.raises(link.UserFacingError, match="protocol 2"):
        link.check_versions({**info, "protocol": 2})


def test_no_backend_and_no_auto_start_is_a_clear_error():
    port = unused_loopback_port()
    job = run_job(lambda j: link.connect(link.Connection(f"tcp://127.0.0.1:{port}", timeout=1.0)))
    assert job.error is not None and "No answer from the Steady Talk backend" in job.error


def test_local_backend_command_forms():
    python = link.LocalBackend(sys.executable, "tcp://127.0.0.1:6000")
    assert python.argv()[1:] == ["-m", "steadytalk_backend.cli", "serve", "--bind", "tcp://127.0.0.1:6000"]
    wrapped = link.LocalBackend("conda run -n 'steady talk' steadytalk", "tcp://127.0.0.1:6000")
    assert wrapped.argv() == [
        "conda",
        "run",
        "-n",
        "steady talk",
        "steadytalk",
        "serve",
        "--bind",
        "tcp://127.0.0.1:6000",
    ]
    missing = link.LocalBackend("/nonexistent/steadytalk", "tcp://127.0.0.1:6000")
    with pytest.raises(link.UserFacingError, match="Could not start the local backend"):
        missing.start()


def test_a_backend_of_another_protocol_version_is_a_clear_error():
    """A real ROUTER socket that answers like a future backend (protocol 2)."""
    import msgpack
    import zmq

    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer():
        if router.poll(5000):
            identity, header, *_ = router.recv_multipart()
            request = msgpack.unpackb(header)
            reply = {**request, "protocol": 2, "status": "ok", "body": {}, "buffers": []}
            router.send_multipart([identity, msgpack.packb(reply)])

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        job = run_job(lambda j: link.connect(link.Connection(f"tcp://127.0.0.1:{port}", timeout=5.0)))
    finally:
        thread.join()
        router.close(linger=0)
    assert job.error is not None and "protocol version 2" in job.error and "same release" in job.error


def test_a_request_the_backend_does_not_know_says_to_update_it(server):
    from steadytalk_shared.client import BackendClient, BackendError
    from steadytalk_shared.protocol import Message

    with BackendClient(server.endpoint, timeout=10, retries=0) as client, pytest.raises(BackendError) as caught:
        client.request(Message("portrait_rig_of_the_future"))
    text = link.describe_backend_error(caught.value)
    assert "unknown message type" in text and "older than this add-on" in text, text
