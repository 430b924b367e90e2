"""Enqueues jobs and prints their ids, one per line.

    python3 producer.py --url http://127.0.0.1:7070 --count 10
"""
import argparse

from flotilla_http import Flotilla


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:7070")
    p.add_argument("--queue", default="default")
    p.add_argument("--count", type=int, default=10)
    args = p.parse_args()
    client = Flotilla(args.url)
    for i in range(args.count):
        kind = "py.divide"
        job = client.enqueue(args.queue, kind, {"a": 100, "b": i}, max_attempts=1)
        print(job["id"], flush=True)


if __name__ == "__main__":
    main()
