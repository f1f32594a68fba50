"""elements/appliance-rpc-reply: the RPC reply poll of oslo.messaging, edited at build time,
run against stand-in oslo_messaging packages of each shape it may meet."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "elements/appliance-rpc-reply/post-install.d/70-rpc-reply-poll"

# ReplyWaiters.get as oslo.messaging >= 14.4 has it (a look, then 0.5 s of sleep), reduced.
POLLING = """\
class ReplyWaiters:
    def get(self, msg_id, timeout):
        watch = timeutils.StopWatch(duration=timeout)
        watch.start()
        while not watch.expired():
            try:
                return self._queues[msg_id].get(block=False)
            except queue.Empty:
                time.sleep(0.5)
        raise MessagingTimeout(msg_id)
"""
# Before 14.4 (Zed's 14.0): blocks on the queue, nothing to change.
BLOCKING = """\
class ReplyWaiters:
    def get(self, msg_id, timeout):
        return self._queues[msg_id].get(block=True, timeout=timeout)
"""
# A loop of a shape the element does not know: two such sleeps.
UNKNOWN = POLLING + POLLING.replace("ReplyWaiters", "Other")


def run(tmp_path, source, env=None):
    """The element's script with ``source`` as oslo_messaging/_drivers/amqpdriver.py (None:
    no oslo_messaging); returns (exit status, stdout+stderr, the file afterwards)."""
    driver = tmp_path / "oslo_messaging/_drivers/amqpdriver.py"
    if source is not None:
        driver.parent.mkdir(parents=True)
        (tmp_path / "oslo_messaging/__init__.py").write_text("")
        driver.write_text(source)
    result = script(tmp_path, env)
    return result.returncode, result.stdout + result.stderr, driver.read_text() if source is not None else None


def script(tmp_path, env=None):
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path), **(env or {})})


def patched(source):
    return "reply_poll_delay = 0.001" in source and "time.sleep(reply_poll_delay)" in source \
        and "time.sleep(0.5)" not in source


@pytest.mark.parametrize("source, env, status, changed, says", [
    (POLLING, {}, 0, True, "backs off from 1 ms to 0.5 s"),
    (BLOCKING, {}, 0, False, "does not poll for replies"),
    (UNKNOWN, {}, 1, False, "not the polling loop this element knows"),
    (None, {}, 0, False, "oslo.messaging is not installed"),
    (POLLING, {"DIB_APPLIANCE_RPC_REPLY_POLL": "upstream"}, 0, False, ""),
    (POLLING, {"DIB_APPLIANCE_RPC_REPLY_POLL": "fast"}, 1, False, "expected backoff or upstream, got 'fast'"),
])
def test_rpc_reply_poll(tmp_path, source, env, status, changed, says):
    code, output, after = run(tmp_path, source, env)
    assert (code, says in output) == (status, True), output
    if source is not None:
        assert patched(after) is changed and (after == source) is not changed, after
        compile(after, "amqpdriver.py", "exec")


def test_rpc_reply_poll_twice_changes_nothing_more(tmp_path):
    _, _, once = run(tmp_path, POLLING)
    again = script(tmp_path)
    assert again.returncode == 0 and "already polls with a back-off" in again.stdout, again.stdout
    assert (tmp_path / "oslo_messaging/_drivers/amqpdriver.py").read_text() == once
