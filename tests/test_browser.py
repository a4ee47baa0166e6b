"""A student's first minutes, in a real browser.

The student bundle (`make release`) is served with JupyterLab from the kit's environment (nbgrader's lab
extension provides the Validate button) and driven with headless Chromium through Selenium: open
`slimming/sparsity_train.ipynb`, run its first cells, press Validate, and read what the page shows.

Needs Debian's `chromium` and `chromium-driver` (`make system-packages`, as root). Where they are missing
the test is skipped and says so; under CI (the CI variable set) a missing browser is a failure instead.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from autograde import release
from lib import profile

NOTEBOOK = "slimming/sparsity_train.ipynb"
LAST_CELL_RUN = "test_update_bn"     # nbgrader grade_id: the student runs the notebook down to this cell
SERVER_START_S = 90                  # a cold JupyterLab on a busy 2-core machine
PAGE_LOAD_S = 90
CELLS_RUN_S = 120
VALIDATE_S = 120                     # Validate on the blank notebook: 15-18 s here


# --- the browser ----------------------------------------------------------------------------------------

def browser_paths():
    """(chromium, chromedriver) executables; skip (fail under CI) naming what is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not path]
    message = (f"the browser test needs the Debian package(s) {' and '.join(missing)}, not installed here: "
               f"run `make system-packages` as root")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser():
    """A headless Chromium driven by Debian's chromedriver (same build, so the protocol always matches).

    On teardown the browser and its driver are quit, and none of their processes may be left running.
    """
    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)     # --no-sandbox: Chromium refuses to run as root (CI) without it
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    processes = process_tree(driver.service.process.pid)
    yield driver
    driver.quit()
    assert_all_gone(processes, "Chromium and chromedriver")


# --- processes --------------------------------------------------------------------------------------------

def process_tree(pid):
    """The process `pid` and all its descendants (psutil.Process objects)."""
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


def assert_all_gone(processes, what, timeout=20):
    """Wait for `processes` to exit; kill and report any still running after `timeout` seconds."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        process.kill()
    assert not alive, f"{what} left processes running after being stopped: {[p.pid for p in alive]}"


# --- JupyterLab -------------------------------------------------------------------------------------------

def free_port():
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on localhost, with a token, serving `root`; `url(path)` opens a file in it."""

    def __init__(self, root, home, pythonpath):
        self.root, self.port, self.token = Path(root), free_port(), secrets.token_hex(16)
        self.log_path = Path(home) / "jupyterlab.log"
        env = {k: v for k, v in os.environ.items() if k not in ("NBGRADER_EXECUTION", "MPLBACKEND")}
        env.update(PYTHONPATH=str(pythonpath),           # the kernels import the bundle's lib/, as a student's do
                   LAB_PROFILE="quick", OMP_NUM_THREADS="1",
                   JUPYTER_CONFIG_DIR=str(Path(home) / "config"),    # no settings or workspaces from ~/.jupyter
                   JUPYTER_DATA_DIR=str(Path(home) / "data"), JUPYTER_RUNTIME_DIR=str(Path(home) / "runtime"),
                   IPYTHONDIR=str(Path(home) / "ipython"))
        command = [str(Path(sys.executable).with_name("jupyter-lab")), "--no-browser", "--allow-root",
                   "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                   "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        # cwd: nbgrader's Validate reads nbgrader_config.py from the server's folder; a student has none there
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)

    def api(self, path, method="GET"):
        """The server's REST API (/api/<path>), authenticated with the token: the decoded JSON answer."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def wait_ready(self, timeout=SERVER_START_S):
        """Wait until the server answers /api/status; fail with its log if it exits or stays silent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                return self.api("status")
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"JupyterLab did not answer on port {self.port} within {timeout} s:\n{self.log_tail()}")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/lab/tree/{path}?token={self.token}"

    def log_tail(self, lines=30):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        """Shut the server down with its kernels (POST /api/shutdown); nothing it started may outlive it."""
        if self.process.poll() is not None:             # it died on its own: wait_ready reported it
            return
        processes = process_tree(self.process.pid)
        try:
            self.api("shutdown", method="POST")
        except OSError:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"JupyterLab did not stop within 30 s of /api/shutdown:\n{self.log_tail()}")
        assert_all_gone(processes, "JupyterLab (its kernels)")


@pytest.fixture
def student_lab(tmp_path):
    """JupyterLab serving the labs/ folder of a freshly built student bundle; stopped on teardown."""
    bundle = release.build(tmp_path / "dist")
    lab = JupyterLab(bundle / "labs", home=tmp_path, pythonpath=bundle)
    try:
        lab.wait_ready()
        yield lab
    finally:
        lab.stop()


# --- what the page shows ----------------------------------------------------------------------------------

def wait_for(driver, seconds, what, condition):
    """Wait until condition(driver) is truthy and return it; fail saying what did not happen in time."""
    return WebDriverWait(driver, seconds, poll_frequency=0.25).until(
        condition, message=f"the page did not show {what} within {seconds} s")


def cells(driver):
    """The notebook's cell elements, in order (all in the DOM: JupyterLab's default windowing keeps them)."""
    return driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook .jp-Cell")


def prompt(cell):
    """The cell's execution prompt as shown: '[ ]:' never run, '[*]:' running, '[3]:' done."""
    return cell.find_element(By.CSS_SELECTOR, ".jp-InputPrompt").get_attribute("textContent").strip()


def outputs(driver, cell):
    """The text of the cell's outputs, scrolled into view as a student would read them."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    return "\n".join(o.text for o in cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))


def kernel_idle(driver):
    """The notebook toolbar's kernel indicator when it shows the kernel idle (an empty list otherwise)."""
    return driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status=idle]")


def press(driver, *keys, times=1):
    """Press a key chord (e.g. Shift+Enter) on the focused notebook, `times` times."""
    *modifiers, key = keys
    for _ in range(times):
        chord = ActionChains(driver)
        for modifier in modifiers:
            chord.key_down(modifier)
        chord.send_keys(key)
        for modifier in reversed(modifiers):
            chord.key_up(modifier)
        chord.perform()


def validation_results(dialog):
    """[(cell source, error text)] for every cell nbgrader's Validate dialog lists as failed.

    The dialog's body holds, per failed cell, a paragraph 'The following cell failed:', the cell's source
    and the error, each in a <pre>.
    """
    body = dialog.find_element(By.CSS_SELECTOR, ".jp-Dialog-body")
    blocks = [b.get_property("innerText") for b in body.find_elements(By.XPATH, "./div")]   # <br> as newlines
    failed = []
    for i, block in enumerate(blocks):
        if block.strip() == "The following cell failed:":
            failed.append((blocks[i + 1].strip(), blocks[i + 2].strip()))
    return failed


@contextmanager
def screenshot_on_failure(driver, folder):
    """On any failure inside, save what the browser shows (PNG and HTML) and name the files in the error."""
    try:
        yield
    except BaseException as error:
        png, html = Path(folder) / "browser-failure.png", Path(folder) / "browser-failure.html"
        try:
            driver.save_screenshot(str(png))
            html.write_text(driver.page_source)
            error.add_note(f"what the browser showed: {png} and {html}")
        except Exception as screenshot_error:       # the browser itself may be what broke
            error.add_note(f"no screenshot: {screenshot_error}")
        raise


# --- the tests --------------------------------------------------------------------------------------------

def test_a_missing_browser_is_a_skip_naming_the_packages_and_a_failure_under_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/chromium" if name == "chromium" else None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromium-driver, not installed.*make system-packages"):
        browser_paths()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"chromium-driver"):
        browser_paths()


def test_a_process_left_running_is_reported_and_killed():
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    time.sleep(0.5)                                  # let the shell start its child
    processes = process_tree(shell.pid)
    shell.kill()                                     # the shell goes, its `sleep` would stay
    shell.wait()
    with pytest.raises(AssertionError, match=r"a shell left processes running"):
        assert_all_gone(processes, "a shell", timeout=1)
    deadline = time.monotonic() + 5
    while any(running(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(running(p) for p in processes), "the process left running was not killed"


def running(process):
    """Whether the process still runs (a killed process no one has reaped yet is a zombie: it does not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def notebook_cells(path):
    """The release notebook's cells as nbformat dicts, with their nbgrader grade_id (or None)."""
    nb = json.loads(Path(path).read_text())
    return [dict(cell, grade_id=cell["metadata"].get("nbgrader", {}).get("grade_id")) for cell in nb["cells"]]


def open_notebook(driver, lab, path, n_cells):
    """Open the notebook, wait for all its cells and an idle kernel; return the Validate button."""
    driver.get(lab.url(path))
    wait_for(driver, PAGE_LOAD_S, f"{path} with all its {n_cells} cells", lambda d: len(cells(d)) == n_cells)
    wait_for(driver, PAGE_LOAD_S, "the notebook's kernel started and idle", kernel_idle)
    return wait_for(driver, 10, "nbgrader's Validate button in the notebook's toolbar (is the @jupyter/nbgrader "
                    "lab extension enabled? `jupyter labextension list`)",
                    lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel jp-button.validate-button"))[0]


def run_from_top(driver, last, code_cells):
    """Shift+Enter from the first cell through cell `last`, as a student does; wait for the code cells to finish."""
    cells(driver)[0].find_element(By.CSS_SELECTOR, ".jp-InputPrompt").click()
    press(driver, Keys.SHIFT, Keys.ENTER, times=last + 1)
    wait_for(driver, CELLS_RUN_S, f"cells {code_cells} executed (a number in their prompts) and the kernel idle",
             lambda d: all(re.fullmatch(r"\[\d+\]:", prompt(cells(d)[i])) for i in code_cells) and kernel_idle(d))


def validate(driver, button):
    """Press Validate and return nbgrader's 'Validation Results' dialog (nbgrader saves the notebook, runs it
    in a fresh kernel, and lists the failed graded cells)."""
    button.click()
    return wait_for(driver, VALIDATE_S, "nbgrader's 'Validation Results' dialog",
                    lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
                               if "Validation Results" in e.text])[0]


def test_student_runs_first_cells_and_validates_blank_notebook(browser, student_lab, tmp_path):
    # browser first: where Chromium is missing the test is skipped before JupyterLab starts
    nb_cells = notebook_cells(student_lab.root / NOTEBOOK)
    index = {cell["grade_id"]: i for i, cell in enumerate(nb_cells)}
    last = index[LAST_CELL_RUN]
    code_cells = [i for i in range(last + 1) if nb_cells[i]["cell_type"] == "code"]
    graded = {"".join(c["source"]).strip(): c["grade_id"] for c in nb_cells
              if c["metadata"].get("nbgrader", {}).get("grade")}
    slim, hp = profile.config("slimming", "quick"), profile.config("vgg", "quick")

    with screenshot_on_failure(browser, tmp_path):
        started = time.monotonic()
        button = open_notebook(browser, student_lab, NOTEBOOK, len(nb_cells))
        opened = time.monotonic()
        title = "".join(nb_cells[0]["source"]).splitlines()[0].lstrip("# ")
        assert cells(browser)[0].find_element(By.CSS_SELECTOR, ".jp-RenderedMarkdown h1").text == title

        run_from_top(browser, last, code_cells)
        ran = time.monotonic()
        shown = cells(browser)
        setup = outputs(browser, shown[index["setup"]])
        assert f"profile 'quick' on cpu: VGG-19 at width {hp['width']}, {hp['epochs']} epochs" in setup, \
            f"the setup cell shows no profile line:\n{setup}"
        runs = ", ".join(f"{tag}: s = {s:g}" for tag, s in slim["lambdas"].items())
        assert f"runs: {runs}" in setup, f"the setup cell shows no lambda grid:\n{setup}"
        assert re.search(r"\d+ training, \d+ validation .* and \d+ test images", setup), setup
        assert outputs(browser, shown[index["update_bn"]]) == "", "defining update_bn should print nothing"
        visible_test = outputs(browser, shown[index[LAST_CELL_RUN]])
        assert "NotImplementedError" in visible_test and "update_bn(_model, 0.1)" in visible_test, \
            f"the blank update_bn's visible test should show its NotImplementedError traceback:\n{visible_test}"

        dialog = validate(browser, button)
        validated = time.monotonic()
        failed = validation_results(dialog)
        body_class = dialog.find_element(By.CSS_SELECTOR, ".jp-Dialog-body").get_attribute("class")
        assert "validation-failed" in body_class and "Success" not in dialog.text, dialog.text
        assert failed and all(source in graded for source, _ in failed), \
            f"the dialog should list failed graded cells of {NOTEBOOK}, it lists:\n{failed}"
        errors = {graded[source]: error for source, error in failed}
        assert "NotImplementedError" in errors.get(LAST_CELL_RUN, ""), \
            f"the dialog should show {LAST_CELL_RUN} failing on the blank update_bn (NotImplementedError):\n{failed}"

    print(f"\nbrowser: notebook open in {opened - started:.1f} s, cells {code_cells} ran in {ran - opened:.1f} s, "
          f"Validate answered in {validated - ran:.1f} s, listing {len(failed)} failed cells")


# --- hostile markup in the pages a TA and a student read -----------------------------------------------------

ATTACK = ('<img src=x onerror="window.pwned=1"> <svg onload="window.pwned=2"></svg> '
          '<script>window.pwned=3</script> <iframe srcdoc="<script>parent.pwned=4</script>"></iframe> '
          '[see](javascript:window.pwned=5) <a href="javascript:window.pwned=6" id=go>go</a> '
          '<a href=# onclick="window.pwned=7">click</a>')


def rendered_pages(folder, sanitize):
    """The feedback page and formgrader's view of a graded notebook with the attack in a written answer and in
    a grader's message naming a file, rendered with nbgrader's own templates; [paths]."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    from autograde.cohort import markdown_literal
    from autograde.referee import sanitize_markdown
    message = "**Message from the grader**\n\n- " + (markdown_literal(ATTACK + ".png") if sanitize else ATTACK)
    cells = [nbformat.v4.new_markdown_cell(message), nbformat.v4.new_markdown_cell("My answer: " + ATTACK)]
    if sanitize:
        for cell in cells:
            cell.source = sanitize_markdown(cell.source)
    nb = nbformat.v4.new_notebook(cells=cells)
    pages = []
    for template in ("feedback", "formgrade"):
        config = Config()
        config.HTMLExporter.template_name = template
        config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
        # what nbgrader's GenerateFeedback adds: the folder of the bootstrap CSS its template inlines
        config.HTMLExporter.extra_template_paths = [str(Path(handlers.template_path).parent / "static" /
                                                        "node_modules" / "bootstrap" / "dist" / "css")]
        resources = {"base_url": "/", "submission_id": "x", "notebook_id": "kd", "index": 0, "total": 1,
                     "student": "s", "last_name": "", "first_name": "", "notebook_path": "kd.ipynb",
                     "nbgrader": {"notebook": "kd", "score": 0, "max_score": 7, "late_penalty": 0}}
        html, _ = HTMLExporter(config=config).from_notebook_node(nb, resources=resources)
        pages.append(folder / f"{template}-{'clean' if sanitize else 'raw'}.html")
        pages[-1].write_text(html)
    return pages


def attack_ran(browser, page):
    """Open `page`, click every link of the attack, and say whether any of its scripts ran."""
    browser.get(page.as_uri())
    time.sleep(1)
    for link in browser.find_elements(By.CSS_SELECTOR, "a"):
        if link.text in ("see", "go", "click"):
            try:
                link.click()
            except Exception:           # not clickable: nothing of it runs either
                pass
    return browser.execute_script("return window.pwned || null")


def test_no_student_markup_runs_in_the_browser(browser, tmp_path):
    """Headless Chromium opens the feedback page and formgrader's view as the referee leaves them (every markdown
    cell sanitised, the grader's message escaped): no script of the attack runs, whatever is clicked. The same
    pages without the sanitising do run it: the test sees an attack when there is one."""
    for page in rendered_pages(tmp_path, sanitize=False):
        assert attack_ran(browser, page) is not None, f"{page.name}: the unsanitised attack did not run"
    for page in rendered_pages(tmp_path, sanitize=True):
        assert attack_ran(browser, page) is None, f"{page.name}: the attack ran in the sanitised page"
