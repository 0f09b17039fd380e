"""JupyterLab as a user meets it (`make lab`): a server at the repository root lists the six notebooks over its
REST API, the project kernel that setup installs starts there, and a figure drawn through `plots` comes back
inline (issue 16: executed notebooks held no image, and the lab only offered a generic `python3` kernel)."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from falcon_h1r_lib.paths import repo_root

KERNEL = "falcon-h1r"  # the Makefile's KERNEL on the CPU stack
NOTEBOOKS = ["01_architecture.ipynb", "02_data_curation.ipynb", "03_sft.ipynb", "04_rl.ipynb",
             "05_evaluation.ipynb", "06_deepconf_scaling.ipynb"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, tmp: Path):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.runtime = tmp / "runtime"
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(self.runtime), "JUPYTER_CONFIG_DIR": str(tmp / "config")}
        env.pop("MPLBACKEND", None)  # as `make lab` leaves it: the kernel's own (inline) backend
        self.log = (tmp / "server.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={repo_root()}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, method: str = "GET", body: dict | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
        return json.loads(text) if text else None

    def wait(self, seconds: float = 60.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"the Jupyter server did not answer on port {self.port}: see {self.log.name}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.mark.slow
def test_the_lab_lists_the_notebooks_and_draws_inline_in_the_project_kernel(tmp_path):
    from jupyter_client import BlockingKernelClient
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no {KERNEL!r} kernel: `make setup` installs it into the virtualenv")
    assert spec.env.get("OMP_WAIT_POLICY") == "PASSIVE"  # set before the kernel imports torch
    server = _Server(tmp_path)
    try:
        server.wait()
        listing = server.api("contents/notebooks")
        assert sorted(x["name"] for x in listing["content"] if x["name"].endswith(".ipynb")) == NOTEBOOKS
        assert {"notebooks", "falcon_h1r_lib", "figures"} <= {x["name"] for x in server.api("contents")["content"]}
        kernel = server.api("kernels", "POST", {"name": KERNEL, "path": "notebooks"})
        assert kernel["name"] == KERNEL
        client = BlockingKernelClient(connection_file=str(server.runtime / f"kernel-{kernel['id']}.json"))
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            language_info = client.kernel_info(reply=True, timeout=30)["content"]["language_info"]
            outputs = []
            reply = client.execute_interactive(
                "import os, matplotlib, matplotlib.pyplot as plt\n"
                "from falcon_h1r_lib import plots\n"
                "fig, ax = plt.subplots(figsize=(2, 1))\nax.plot([0, 1], [1, 0])\nplt.show()\n"
                "print(matplotlib.get_backend(), os.environ.get('OMP_WAIT_POLICY'))",
                timeout=120, output_hook=outputs.append)
        finally:
            client.stop_channels()
            server.api(f"kernels/{kernel['id']}", "DELETE")
        assert reply["content"]["status"] == "ok", reply["content"]
        images = [m for m in outputs if m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]]
        printed = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
        assert len(images) == 1, [m["msg_type"] for m in outputs]
        assert "inline" in printed and printed.split()[-1] == "PASSIVE", printed
        # what JupyterLab writes into a notebook it opens with this kernel: committed already, so nothing changes
        # (the Python patch version is the machine's and is left out)
        lab = {"kernelspec": {"display_name": spec.display_name, "language": spec.language, "name": KERNEL},
               "language_info": {k: v for k, v in language_info.items() if k != "version"}}
        for name in NOTEBOOKS:
            meta = json.loads((repo_root() / "notebooks" / name).read_text())["metadata"]
            meta["language_info"] = {k: v for k, v in meta.get("language_info", {}).items() if k != "version"}
            assert meta == lab, name
    finally:
        server.close()


def test_each_notebook_links_its_neighbours_and_the_readme_and_every_link_resolves():
    import re

    import nbformat

    folder = repo_root() / "notebooks"
    for i, name in enumerate(NOTEBOOKS):
        nb = nbformat.read(folder / name, as_version=4)
        for cell in (nb.cells[0], nb.cells[-1]):  # top and bottom: a reader needs no scrolling back
            assert cell.cell_type == "markdown"
            links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", cell.source)
            assert "../README.md" in links, (name, cell.source)
            for neighbour in [NOTEBOOKS[j] for j in (i - 1, i + 1) if 0 <= j < len(NOTEBOOKS)]:
                assert neighbour in links, (name, neighbour)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", cell.source):
                    assert (folder / target).exists(), f"{name}: link to {target} resolves to nothing"


def test_committed_notebooks_are_byte_for_byte_what_a_jupyter_save_writes():
    """JupyterLab saves through nbformat (sorted keys, indent 1, trailing newline): a notebook in any other layout
    shows as modified in git after the first autosave."""
    import nbformat

    for name in NOTEBOOKS:
        path = repo_root() / "notebooks" / name
        text = path.read_text(encoding="utf-8")
        assert text == nbformat.writes(nbformat.read(path, as_version=4)) + "\n", name


def test_make_lab_adds_allow_root_exactly_when_run_as_root():
    """As root, jupyter refuses to start without --allow-root; `make lab` failed there (issue 16 break test)."""

    from pathlib import Path

    out = subprocess.run(["make", "-n", "lab"], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, check=True).stdout.replace("\\\n", " ")
    line = next(x for x in out.splitlines() if "/jupyter lab " in x)
    assert ("--allow-root" in line) == (os.getuid() == 0), line
