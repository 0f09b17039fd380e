"""The child's entry point: import the child modules, read the job, contain this process, run its role.

Run by path with `-I -S -B`, so this directory's package is put on sys.path only while its modules load
(appended: the stdlib always wins), before `isolate()` can hide these files; the candidate's imports then see
the same sys.path as a bare isolated interpreter.
"""

import json
import os
import sys

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(_PACKAGE_PARENT)
try:
    from child import grader, isolation, solution
finally:
    sys.path.remove(_PACKAGE_PARENT)


def reporter(result_fd, nonce):
    """`report(**rec)`: one nonce-tagged JSON line to the parent (a forged line lacks the nonce)."""
    def report(**rec):
        rec["nonce"] = nonce
        try:
            os.write(result_fd, (json.dumps(rec) + "\n").encode())
        except OSError:
            pass
    return report


def main():
    role, job_fd = sys.argv[1], int(sys.argv[2])
    with open(job_fd, encoding="utf-8") as f:
        job = json.load(f)
    report = reporter(job["result_fd"], job["nonce"])
    enforced = isolation.isolate(job)
    sys.exit(solution.run_solution(job, enforced, report) if role == "solution"
             else grader.run_grader(job, enforced, report))


if __name__ == "__main__":
    main()
