"""The two child processes of `falcon_h1r_lib.sandbox`: run as a program, never imported by the library.

`python -I -S -B child/__main__.py ROLE JOB_FD` (stdlib only; the job is JSON in a memory file at JOB_FD):
  solution  contains itself (namespaces, a private root, rlimits, uid drop, guards), runs the candidate's
            code and, for `run_tests`, then answers calls from the grader over a pipe pair: it sees the
            names and arguments of calls, never the tests nor their expected values.
  grader    runs the tests in a process of its own (own uid when root, never dumpable, own private root):
            a name a test takes from the solution is a stand-in that calls across the pipe, and a return
            value comes back as plain data (tagged JSON decoded into builtins), so nothing the candidate
            defines or patches is ever evaluated here. Only the grader reports test progress to the parent,
            over a descriptor the solution never holds, tagged with a nonce the solution never sees.
Both report to the parent as nonce-tagged JSON lines on `result_fd`. See `sandbox/__init__.py` for what each
layer is. Every module here is stdlib-only and is imported by `__main__.py` before isolation hides these files.
"""
