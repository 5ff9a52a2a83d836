"""`make lab` saves notebooks without widget state (homevalue.notebook_files, deploy/jupyterlab).

JupyterLab saves a notebook (so does its "Render with Voilà" button, before it previews) by
sending the whole notebook, widget views and all, to the server's contents API; the server's
pre-save hook is what keeps them out of the file. This starts `make lab` itself on a free
port, saves a widget-laden notebook through that API as the browser does, and reads the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from voila_server import free_port, process_tree, stop_group

from homevalue.notebook_files import WIDGET_VIEW

PROJ_ROOT = Path(__file__).resolve().parents[1]
PRICE_PAGE = PROJ_ROOT / "notebooks" / "price_a_home.ipynb"
START_TIMEOUT = 120
SAVE_STATE = "@jupyter-widgets/jupyterlab-manager:plugin"


def isolated_jupyter(folder: Path) -> dict[str, str]:
    """An environment whose Jupyter user folders are the test's own (no one's settings)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    for name in (
        "JUPYTER_CONFIG_DIR",
        "JUPYTER_DATA_DIR",
        "JUPYTER_RUNTIME_DIR",
        "JUPYTERLAB_SETTINGS_DIR",
        "JUPYTERLAB_WORKSPACES_DIR",
    ):
        env[name] = str(folder / name.lower())
    env.pop("JUPYTER_CONFIG_PATH", None)
    return env


@pytest.fixture
def lab(tmp_path):
    """`make lab` on a folder of its own; its URL and token."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}"
    log = (tmp_path / "lab.log").open("wb")
    process = subprocess.Popen(
        ["make", "-s", "lab", f"NOTEBOOKS={notebooks}", f"LAB_ARGS={args}"],
        cwd=PROJ_ROOT,
        env=isolated_jupyter(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}api/status", params={"token": token}, timeout=5).ok:
                    break
            assert time.monotonic() < deadline, (tmp_path / "lab.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url, token, notebooks
    finally:
        stop_group(process.pid, process_tree(process.pid), signal.SIGTERM)
        log.close()


def widget_laden_page() -> dict:
    """The price page as JupyterLab holds it after a run: a widget view beside each
    panel's text, and the widget state the manager would save with saveState on."""
    notebook = json.loads(PRICE_PAGE.read_text(encoding="utf-8"))
    notebook["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            output["data"][WIDGET_VIEW] = {"model_id": secrets.token_hex(16)}
    return notebook


def test_saving_from_jupyterlab_writes_no_widget_state(lab):
    url, token, notebooks = lab
    headers = {"Authorization": f"token {token}"}
    model = {"type": "notebook", "format": "json", "content": widget_laden_page()}
    saved = requests.put(f"{url}api/contents/page.ipynb", json=model, headers=headers, timeout=30)
    assert saved.status_code in (200, 201), saved.text
    stored = json.loads((notebooks / "page.ipynb").read_text(encoding="utf-8"))
    assert "widgets" not in stored["metadata"]
    assert WIDGET_VIEW not in json.dumps(stored)
    expected = json.loads(PRICE_PAGE.read_text(encoding="utf-8"))
    assert [c.get("outputs") for c in stored["cells"]] == [
        c.get("outputs") for c in expected["cells"]
    ]
    # The widget manager's own switch, as JupyterLab's settings API gives it to the page:
    # its default (where the overrides apply) and no user setting over it.
    answer = requests.get(f"{url}lab/api/settings/{SAVE_STATE}", headers=headers, timeout=30)
    settings = answer.json()
    assert settings["schema"]["properties"]["saveState"]["default"] is False
    assert settings["settings"].get("saveState", False) is False


def test_make_labs_settings_overrides_turn_widget_state_saving_off(tmp_path):
    """The overrides `make lab` puts on Jupyter's config path, read by jupyterlab_server's
    own reader (what its settings API serves the page)."""
    recipe = subprocess.run(
        ["make", "-s", "-n", "lab"],
        cwd=PROJ_ROOT,
        capture_output=True,
        text=True,
        env=isolated_jupyter(tmp_path),
        check=True,
    ).stdout
    assert f"JUPYTER_CONFIG_PATH={PROJ_ROOT}/deploy/jupyterlab" in recipe
    assert "--ContentsManager.pre_save_hook=homevalue.notebook_files.pre_save_hook" in recipe
    env = {
        **isolated_jupyter(tmp_path),
        "JUPYTER_CONFIG_PATH": str(PROJ_ROOT / "deploy/jupyterlab"),
    }
    read = (
        "import json; from jupyterlab_server.settings_utils import _get_overrides; "
        "print(json.dumps(_get_overrides('')[0]))"
    )
    overrides = subprocess.run(
        [sys.executable, "-c", read], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(overrides)[SAVE_STATE] == {"saveState": False}
