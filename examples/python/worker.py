"""A worker: long-polls for free slots only, runs `py.divide` jobs, reports results.

Dividing by zero is a non-retryable failure (the job goes dead at once). Stops after
--exit-after jobs, or on Ctrl-C.

    python3 worker.py --url http://127.0.0.1:7070 --concurrency 4
"""
import argparse
import concurrent.futures

from flotilla_http import Flotilla


def divide(job):
    payload = job["payload"]
    return {"quotient": payload["a"] / payload["b"]}


def run(client, job):
    try:
        result = divide(job)
    except ZeroDivisionError as e:
        return client.fail(job, f"cannot divide: {e}", retryable=False)
    client.heartbeat(job, progress={"done": 1.0})
    return client.complete(job, result)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:7070")
    p.add_argument("--queue", default="default")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--exit-after", type=int, default=0, help="stop after this many jobs (0: never)")
    args = p.parse_args()
    client = Flotilla(args.url)
    worker_id = client.register([args.queue], args.concurrency)["worker_id"]
    handled, running = 0, set()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        while not args.exit_after or handled < args.exit_after:
            free = args.concurrency - len(running)
            if free > 0:
                for job in client.poll(worker_id, [args.queue], free, wait_ms=2000):
                    running.add(pool.submit(run, client, job))
            done, _ = concurrent.futures.wait(running, timeout=0.05, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                running.discard(future)
                answer = future.result()
                handled += 1
                print(answer["id"], answer["state"], flush=True)


if __name__ == "__main__":
    main()
