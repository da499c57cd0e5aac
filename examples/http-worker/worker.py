"""A worker: fetch a job with requests, post its result with httpx, exit 0 when done."""

import os
import sys

import httpx
import requests

base = os.environ["JOBS_URL"]
job = requests.get(f"{base}/job", timeout=30)
job.raise_for_status()
numbers = job.json()["numbers"]
print(f"http-worker: got {len(numbers)} numbers with requests {requests.__version__}", flush=True)
answer = httpx.post(f"{base}/result", json={"sum": sum(numbers)}, timeout=30)
answer.raise_for_status()
print(f"http-worker: posted the sum with httpx {httpx.__version__}: {answer.text}", flush=True)
sys.exit(0)
