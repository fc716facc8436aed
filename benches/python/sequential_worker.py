#!/usr/bin/env python3
"""The yardstick heat-pipeline's speed is quoted against: a sequential Python worker.

What the original system ran, in one loop and one message at a time: take a Heat result
from the capture queue (prefetch 1), write the three records the way the original writer
did (`json.dumps` with default arguments), then ack. Per message: one etcd put for
heat_stacks, one for job_state, and one transaction that puts /state and deletes the
job_state (the same three etcd requests the pipeline makes, without its version guards,
hand-offs or decisions). It handles only what the benchmark sends (creates and lifecycles
with well-formed bodies); it is a yardstick, not a second implementation.

etcd is reached through its JSON gateway (`/v3/kv/...`) over one kept-alive HTTP connection,
so that the worker needs nothing but pika. Exits when the queue has been empty for
`--idle` seconds, or after `--messages` messages, printing `done N` on stdout.

    sequential_worker.py --amqp-url URL --queue NAME --etcd http://127.0.0.1:2379 \
        --prefix /bench-x --messages 3000
"""

import argparse
import base64
import http.client
import json
import signal
import sys
import time
import urllib.parse

import pika

WORKER_STATE = {
    ("create", "CREATE_COMPLETE"): "CREATE_COMPLETED",
    ("modify", "UPDATE_COMPLETE"): "MODIFY_COMPLETED",
    ("delete", "DELETE_COMPLETE"): "DELETE_COMPLETED",
}


class Etcd:
    """etcd's JSON gateway over one HTTP/1.1 connection."""

    def __init__(self, endpoint):
        url = urllib.parse.urlparse(endpoint)
        self.connection = http.client.HTTPConnection(url.hostname, url.port or 2379)

    def call(self, path, body):
        self.connection.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json"}
        )
        response = self.connection.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: {response.status} {text[:200]!r}")

    def put(self, key, value):
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def put_and_delete(self, key, value, gone):
        self.call(
            "/v3/kv/txn",
            {
                "success": [
                    {"request_put": {"key": b64(key), "value": b64(value)}},
                    {"request_delete_range": {"key": b64(gone)}},
                ]
            },
        )


def b64(text):
    return base64.b64encode(text.encode()).decode()


def records(body, prefix):
    """The three (key, value) writes for one Heat result, as the original wrote them."""
    result = json.loads(body)
    job = result["job"]
    stack = result.get("stack") or {}
    stack = stack.get("stack", stack)
    path = job.get("resource_path") or job["resource_type"] + "s"
    name = f"{path}/{job['resource_id']}"
    status = stack.get("stack_status", "DELETE_COMPLETE")
    outputs = stack.get("outputs", [])
    heat_stacks = {
        "stack_id": stack.get("stack_name", ""),
        "tenant_id": job["tenant_id"],
        "stack_status": status,
        "output": outputs,
        "status_reason": stack.get("stack_status_reason", ""),
        "id": f"{job['resource_type']}:{job['resource_id']}",
    }
    job_state = {"heat_outputs": outputs, "orchestration_state": status}
    writes = [
        (f"{prefix}/esi-worker/heat_stacks/v2.0/{name}", json.dumps(heat_stacks)),
        (f"{prefix}/esi-worker/job_state/v2.0/{name}", json.dumps(job_state)),
    ]
    if status.endswith("_IN_PROGRESS"):
        return writes, None
    action = job["action"]
    worker_state = WORKER_STATE.get((action, status))
    error = ""
    if worker_state is None:
        worker_state = {"create": "CREATE", "modify": "MODIFY"}.get(action, "DELETE") + "_FAILED"
        error = heat_stacks["status_reason"] or status
    state = {
        "state": {
            "worker_state": worker_state,
            "heat_outputs": json.dumps(outputs),
            "orchestration_state": status,
        },
        "version": job["version"],
        "error": error,
    }
    return writes, (f"{prefix}/state/v2.0/{name}", json.dumps(state))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--messages", type=int, default=0, help="stop after N (0: no limit)")
    parser.add_argument("--idle", type=float, default=5.0)
    args = parser.parse_args()

    etcd = Etcd(args.etcd)
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    done = 0
    for method, _properties, body in channel.consume(
        args.queue, inactivity_timeout=args.idle
    ):
        if method is None:
            break
        writes, state = records(body, args.prefix)
        for key, value in writes:
            etcd.put(key, value)
        if state is not None:
            etcd.put_and_delete(state[0], state[1], writes[1][0])
        channel.basic_ack(method.delivery_tag)
        done += 1
        if done == args.messages:
            break
    channel.cancel()
    connection.close()
    print(f"done {done}", flush=True)


if __name__ == "__main__":
    # The bench stops the worker with SIGTERM once its round is written: a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
