"""A minimal Flotilla client over HTTP/JSON, standard library only.

It shows the whole protocol a worker in any language needs: register, long-poll for
as many jobs as there are free slots, heartbeat, complete or fail with the lease token.
"""
import json
import os
import urllib.error
import urllib.request


class FlotillaError(Exception):
    """An error answer: {"error": {"code", "message"}}."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Flotilla:
    def __init__(self, url, token=None):
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("FLOTILLA_TOKEN")

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            err = json.loads(e.read() or b"{}").get("error", {})
            raise FlotillaError(e.code, err.get("code"), err.get("message")) from None

    # producers
    def enqueue(self, queue, kind, payload=None, **options):
        return self.call("POST", "/v1/jobs", dict(queue=queue, kind=kind, payload=payload or {}, **options))

    def job(self, job_id):
        return self.call("GET", f"/v1/jobs/{job_id}")

    # workers
    def register(self, queues, concurrency, host="python", version="example"):
        body = dict(host=host, pid=os.getpid(), queues=queues, concurrency=concurrency, version=version)
        return self.call("POST", "/v1/workers", body)

    def poll(self, worker_id, queues, max_jobs, wait_ms=5000):
        body = dict(worker_id=worker_id, queues=queues, max_jobs=max_jobs, wait_ms=wait_ms)
        return self.call("POST", "/v1/poll", body, timeout=wait_ms / 1000 + 10)["jobs"]

    def heartbeat(self, job, progress=None):
        body = dict(token=job["lease"]["token"], progress=progress)
        return self.call("POST", f"/v1/jobs/{job['id']}/heartbeat", body)

    def complete(self, job, result=None):
        return self.call("POST", f"/v1/jobs/{job['id']}/complete", dict(token=job["lease"]["token"], result=result))

    def fail(self, job, error, retryable=True):
        body = dict(token=job["lease"]["token"], error=error, retryable=retryable)
        return self.call("POST", f"/v1/jobs/{job['id']}/fail", body)
