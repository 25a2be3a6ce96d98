"""A real browser through the whole user journey on an Orrery hub.

Usage: browser_flow.py HUB_URL USER PASSWORD ARTIFACT_DIR
       browser_flow.py HUB_URL USER PASSWORD ARTIFACT_DIR --remote-kernels --orrery BIN --config PATH

Headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium) logs in on
HUB_URL/hub/login, presses "Start my server" on the home page, sees the spawn-pending page
(its URL and <progress> bar; screenshot `spawn-pending.png`), waits until the page's script
opens JupyterLab at /user/USER/lab, opens a new Python 3 notebook from the launcher, runs
`print(6*7)` and waits for `42` in the output (screenshot `jupyterlab.png`).

With --remote-kernels (a hub with `kernels.remote = true`: the user's Jupyter Server runs in
gateway mode and every kernel in a container of its own) the spawn-pending page is noted when
it shows but not required, and after opening the notebook the browser
  1. runs `import socket; print(socket.gethostname())` and reports what it printed (the caller
     compares it with the kernel container's hostname);
  2. runs a second cell that registers an `echo` comm target in the kernel, then, from a script
     in the page, opens another kernel channels WebSocket to the notebook's kernel
     (/user/USER/api/kernels/ID/channels, authenticated by the page's cookies), sends a comm_open
     with two buffers (bytes that are not valid UTF-8 among them) and a comm_msg with one, all in
     Jupyter's binary WebSocket frames, and checks that the kernel's binary replies carry the
     same bytes back (reversed for the comm_msg); screenshot `jupyterlab-remote.png`;
  3. adds the kernelspecs `python3` and `py-extra` ("Python (extra)") the operator's way,
     `BIN --config PATH config add-item kernels.specs …` then `config reload`, reloads
     JupyterLab and waits for a "Python (extra)" card in its launcher (screenshot
     `launcher-remote.png`).

On success prints one JSON line on stdout and exits 0. On failure saves `failure.png`,
`failure.html` and `failure-console.log` (the page's console) into ARTIFACT_DIR, prints what
failed on stderr and exits 1. Never downloads anything: the driver and browser paths are
given explicitly, so selenium-manager is not run (and SE_OFFLINE forbids it to go online).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

# Selenium must not try to fetch a driver or browser (no network here): both paths are given,
# and should selenium-manager still be run it stays offline.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("ORRERY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ORRERY_CHROMEDRIVER", "/usr/bin/chromedriver")
SPAWN_WAIT_S = 120
# The visible notebook (JupyterLab hides, rather than removes, inactive panels).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
# Each wait inside the comm round trip's page script.
COMM_WAIT_S = 60
HOSTNAME_CODE = "import socket; print(socket.gethostname())"
# One line, so that CodeMirror's auto-indent has nothing to indent: the target answers a
# comm_open with its buffers (and how many), and every later comm_msg with them reversed.
ECHO_TARGET_CODE = (
    "import comm; comm.get_comm_manager().register_target('echo', lambda c, m: ("
    "c.on_msg(lambda m2: c.send({'got': len(m2['buffers'])}, "
    "buffers=[bytes(b)[::-1] for b in m2['buffers']])), "
    "c.send({'opened': len(m['buffers'])}, buffers=[bytes(b) for b in m['buffers']])))"
)
EXTRA_SPECS = (
    '{name = "python3", display_name = "Python 3"}',
    '{name = "py-extra", display_name = "Python (extra)"}',
)
EXTRA_SPEC_LABEL = "Python (extra)"


class FlowError(Exception):
    """A step of the journey did not happen as expected."""


def log(msg):
    print(f"[browser_flow {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_driver(profile_dir, trust_spki=None, extra_args=()):
    opts = webdriver.ChromeOptions()
    for arg in extra_args:
        opts.add_argument(arg)
    if trust_spki:
        # Trust the hub's test certificate in this browser profile only (never system-wide).
        opts.add_argument(f"--ignore-certificate-errors-spki-list={trust_spki}")
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile_dir}",
        "--window-size=1400,900",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(60)
    return driver


def wait(driver, seconds, cond, what):
    """WebDriverWait with a message naming the step."""
    try:
        return WebDriverWait(
            driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        ).until(cond)
    except Exception as e:  # TimeoutException and friends
        raise FlowError(f"timed out after {seconds} s waiting for {what} (at {driver.current_url})") from e


def click_when_ready(driver, seconds, locator, what):
    el = wait(driver, seconds, EC.element_to_be_clickable(locator), what)
    el.click()
    return el


def login(driver, hub, user, password):
    driver.get(f"{hub}/hub/login")
    wait(driver, 20, EC.presence_of_element_located((By.ID, "username")), "the login form")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.XPATH, "//form[.//input[@id='password']]//button[@type='submit']").click()
    wait(driver, 20, EC.url_contains("/hub/home"), "the home page after logging in")
    log(f"logged in as {user}: {driver.current_url}")


def start_server(driver):
    button = wait(
        driver,
        20,
        EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Start my server']")),
        "the 'Start my server' button on the home page",
    )
    button.click()
    log("pressed 'Start my server'")


def see_spawn_pending(driver, user, artifacts):
    wait(
        driver,
        30,
        lambda d: "/hub/spawn-pending/" in d.current_url or f"/user/{user}/" in d.current_url,
        "the spawn-pending page",
    )
    if "/hub/spawn-pending/" not in driver.current_url:
        raise FlowError(
            f"Start went straight to {driver.current_url}, not to the spawn-pending page "
            "(the server was ready within slow_spawn_timeout?)"
        )
    bar = wait(driver, 10, EC.presence_of_element_located((By.CSS_SELECTOR, "progress#progress-bar")), "the <progress> bar")
    # Capture before the page's script moves on to the server.
    shot = os.path.join(artifacts, "spawn-pending.png")
    driver.save_screenshot(shot)
    url = driver.current_url
    if "/hub/spawn-pending/" not in url:
        raise FlowError(f"the page left spawn-pending before its screenshot was taken ({url})")
    try:
        info = {
            "url": url,
            "progress": bar.get_attribute("value"),
            "status": driver.find_element(By.ID, "progress-status").text,
        }
    except (StaleElementReferenceException, WebDriverException):
        info = {"url": url}
    log(f"spawn-pending page: {info}; screenshot {shot}")
    return info


def note_spawn_pending(driver, user):
    """With remote kernels the spawn-pending page is not required: whether it showed."""
    wait(
        driver,
        30,
        lambda d: "/hub/spawn-pending/" in d.current_url or f"/user/{user}/" in d.current_url,
        "the spawn-pending page or the server",
    )
    seen = "/hub/spawn-pending/" in driver.current_url
    log(f"after Start: {driver.current_url} (spawn-pending page {'seen' if seen else 'skipped'})")
    return seen


def land_in_lab(driver, user):
    prefix = f"/user/{user}/lab"

    def arrived_or_failed(d):
        if prefix in d.current_url:
            return True
        # The page's script reveals #spawn-failed (or the server renders it) when the spawn fails.
        for el in d.find_elements(By.CSS_SELECTOR, "#spawn-failed:not([hidden]) .notice, .notice.error"):
            if el.is_displayed() and el.text.strip():
                raise FlowError(f"the spawn-pending page reports a failure: {el.text.strip()}")
        return False

    try:
        WebDriverWait(
            driver, SPAWN_WAIT_S, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        ).until(arrived_or_failed)
    except FlowError:
        raise
    except Exception as e:
        raise FlowError(
            f"timed out after {SPAWN_WAIT_S} s waiting for JupyterLab at {prefix} (at {driver.current_url})"
        ) from e
    log(f"in JupyterLab: {driver.current_url}")
    wait(driver, 90, EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-LabShell")), "the JupyterLab shell")
    return driver.current_url


def launcher_labels(driver):
    """The titles (or texts) of the launcher's cards now on the page."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.jp-LauncherCard')]"
        ".map(c => c.getAttribute('title') || c.textContent.trim());"
    )


def open_notebook(driver):
    card = (
        By.CSS_SELECTOR,
        '.jp-LauncherCard[data-category="Notebook"], .jp-LauncherCard[title^="Python 3"]',
    )
    click_when_ready(driver, 90, card, "the launcher's Python 3 notebook card")
    log("clicked the Python 3 notebook card")
    wait(driver, 60, EC.url_contains(".ipynb"), "the new notebook to open")
    # Run only once the kernel is connected (over the proxied websocket) and idle: JupyterLab
    # clears, rather than queues, a cell run while the notebook's session has no kernel yet.
    # The toolbar's execution indicator says "idle" from the start (its initial state), so
    # the status bar's kernel item ("Python 3 | Idle", from the session's kernel) is the sign.
    wait(
        driver,
        90,
        EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'{PANEL} .jp-Notebook-ExecutionIndicator[data-status="idle"]')
        ),
        "the notebook's execution indicator",
    )

    def kernel_idle(d):
        for el in d.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-TextItem"):
            text = el.text.strip()
            if re.search(r"\|\s*Idle$", text):
                return text
        return False

    status = wait(driver, 90, kernel_idle, "the status bar to show the notebook's kernel idle ('… | Idle')")
    log(f"kernel idle: {status!r}")


def cells(driver):
    return driver.find_elements(By.CSS_SELECTOR, f"{PANEL} .jp-Cell")


def cell_editor(driver, index):
    """Cell `index`'s editor in the visible notebook, clicked (so it has the focus)."""

    def editor(d):
        found = cells(d)
        if len(found) <= index:
            return False
        eds = found[index].find_elements(By.CSS_SELECTOR, ".jp-InputArea-editor .cm-content")
        return eds[0] if eds and eds[0].is_displayed() and eds[0].is_enabled() else False

    el = wait(driver, 60, editor, f"cell {index + 1}'s editor")
    el.click()
    return el


def cell_prompt(driver, index):
    found = cells(driver)
    if len(found) <= index:
        return ""
    prompts = found[index].find_elements(By.CSS_SELECTOR, ".jp-InputPrompt")
    return prompts[0].text.strip() if prompts else ""


def cell_output(driver, index):
    """The text of cell `index`'s outputs ('' when none)."""
    found = cells(driver)
    if len(found) <= index:
        return ""
    texts = (el.text.strip() for el in found[index].find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"))
    return "\n".join(t for t in texts if t)


def run_cell(driver, index, code, wants_output=True):
    """Type `code` into cell `index`, run it with Shift+Enter and return its output's text.

    wants_output: wait for some output; else wait until the cell has run (its prompt shows an
    execution count) and return whatever it printed ('' when nothing).
    """
    editor = cell_editor(driver, index)
    editor.send_keys(code)
    what = f"cell {index + 1}'s code"

    def typed_text(_):
        text = editor.get_attribute("textContent") or ""
        return text if code in text else False

    typed = wait(driver, 20, typed_text, f"{what} to appear in the editor")
    if typed != code:
        raise FlowError(f"{what} reads {typed!r} in the editor, not {code!r} (did the editor add to it?)")
    # Shift+Enter runs the cell (JupyterLab queues it until the kernel is up).
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    log(f"ran cell {index + 1} with Shift+Enter: {code}")

    def finished(d):
        if wants_output:
            return cell_output(d, index) or False
        if re.fullmatch(r"\[\d+\]:?", cell_prompt(d, index)):
            return ("ran", cell_output(d, index))
        return False

    # On a loaded machine JupyterLab sometimes drops a run issued right after the kernel
    # connects: the prompt stays "[ ]:" and nothing is sent. A person would press Run again;
    # so does this, at most twice, and says so. (The kernel WebSocket path itself is checked
    # message by message in tests/docker_e2e.rs.)
    for attempt in range(3):
        try:
            got = wait(
                driver,
                20 if attempt < 2 else 120,
                finished,
                f"cell {index + 1}'s {'output' if wants_output else 'run'} (kernel start and execution)",
            )
            break
        except FlowError:
            prompt = cell_prompt(driver, index)
            if attempt == 2 or prompt not in ("[ ]:", "[ ]"):
                raise
            log(f"the run was dropped (prompt {prompt!r}); running cell {index + 1} again")
            cell_editor(driver, index).send_keys(Keys.SHIFT, Keys.ENTER)
    text = got if wants_output else got[1]
    log(f"cell {index + 1} output: {text!r}")
    return text


# Runs in the page (selenium's execute_async_script): arguments are the user, the wait in ms
# and selenium's callback. Finds the notebook's kernel with the page's cookies, opens its
# channels WebSocket and does the comm round trip in Jupyter's binary frames: u32 BE n = 1 +
# buffers, n u32 BE offsets from the frame's start, the JSON message, the buffers.
COMM_JS = r"""
const [user, waitMs, done] = arguments;
const t0 = performance.now();
const result = {steps: [], seen: []};
const step = (s) => result.steps.push(`${Math.round(performance.now() - t0)} ms: ${s}`);
let ws = null;
let finished = false;
const finish = (error) => {
  if (finished) return;
  finished = true;
  if (error) result.error = error;
  result.elapsed_ms = Math.round(performance.now() - t0);
  try { if (ws) ws.close(); } catch (e) {}
  done(result);
};
const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)),
                              (b) => b.toString(16).padStart(2, '0')).join('');
const session = hex(16);
const message = (msgType, content) => ({
  header: {msg_id: `${msgType}-${hex(16)}`, msg_type: msgType, session, username: user,
           date: new Date().toISOString(), version: '5.3'},
  parent_header: {}, metadata: {}, content, channel: 'shell',
});
const encode = (msg, buffers) => {
  const json = new TextEncoder().encode(JSON.stringify(msg));
  const n = 1 + buffers.length;
  const offsets = [4 * (n + 1)];
  let at = offsets[0] + json.length;
  for (const b of buffers) { offsets.push(at); at += b.length; }
  const frame = new Uint8Array(at);
  const view = new DataView(frame.buffer);
  view.setUint32(0, n);  // DataView is big-endian unless told otherwise
  offsets.forEach((o, i) => view.setUint32(4 * (i + 1), o));
  frame.set(json, offsets[0]);
  buffers.forEach((b, i) => frame.set(b, offsets[i + 1]));
  return frame.buffer;
};
const decode = (buf) => {
  const view = new DataView(buf);
  const n = view.getUint32(0);
  const offsets = Array.from({length: n}, (_, i) => view.getUint32(4 * (i + 1)));
  const end = (i) => (i + 1 < n ? offsets[i + 1] : buf.byteLength);
  const msg = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(
    new Uint8Array(buf, offsets[0], end(0) - offsets[0])));
  msg.buffers = offsets.slice(1).map((o, i) => new Uint8Array(buf.slice(o, end(i + 1))));
  return msg;
};
const same = (a, b) => a.length === b.length && Array.from(a).every((x, i) => x === b[i]);
const summary = (m) => ({frame: m.frame, data: m.content.data,
                         buffers: m.buffers.map((b) => ({length: b.length, head: Array.from(b.slice(0, 8))}))});
const waiters = [];
// The first comm_msg whose parent is `parentId`, or an error after waitMs.
const reply = (parentId, what) => new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(
    `no ${what} within ${waitMs} ms; the socket saw ${JSON.stringify(result.seen.slice(-30))}`)), waitMs);
  waiters.push({parentId, resolve: (m) => { clearTimeout(timer); resolve(m); }});
});
const onMessage = (ev) => {
  let msg;
  try {
    if (typeof ev.data === 'string') { msg = JSON.parse(ev.data); msg.buffers = []; msg.frame = 'text'; }
    else { msg = decode(ev.data); msg.frame = 'binary'; }
  } catch (e) {
    finish(`could not decode a frame from the kernel WebSocket: ${e}`);
    return;
  }
  const type = (msg.header || {}).msg_type;
  result.seen.push(`${msg.channel}:${type}:${msg.frame}`);
  if (type !== 'comm_msg') return;
  const parent = (msg.parent_header || {}).msg_id;
  const i = waiters.findIndex((w) => w.parentId === parent);
  if (i >= 0) waiters.splice(i, 1)[0].resolve(msg);
};
(async () => {
  // Like JupyterLab's own requests: cookie auth wants the _xsrf cookie echoed in a header.
  const xsrf = (document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/) || [])[1];
  const headers = {Accept: 'application/json'};
  if (xsrf !== undefined) headers['X-XSRFToken'] = xsrf;
  const listing = await fetch(`/user/${user}/api/kernels`, {headers, signal: AbortSignal.timeout(waitMs)})
    .catch((e) => { throw new Error(`GET /user/${user}/api/kernels: no answer within ${waitMs} ms (${e})`); });
  if (!listing.ok) throw new Error(`GET /user/${user}/api/kernels answered ${listing.status}: ${await listing.text()}`);
  const kernels = await listing.json();
  result.kernels = kernels.map((k) => k.id);
  if (kernels.length !== 1) throw new Error(`expected one kernel (the notebook's); the server lists ${JSON.stringify(kernels)}`);
  const kid = kernels[0].id;
  result.kernel_id = kid;
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}` +
              `/user/${user}/api/kernels/${kid}/channels?session_id=${session}`;
  ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the kernel WebSocket did not open within ${waitMs} ms`)), waitMs);
    ws.onopen = () => { clearTimeout(timer); resolve(); };
    ws.onclose = (e) => { clearTimeout(timer); reject(new Error(`the kernel WebSocket closed before it opened (code ${e.code}, ${JSON.stringify(e.reason)})`)); };
  });
  ws.onclose = (e) => finish(`the kernel WebSocket closed (code ${e.code}, ${JSON.stringify(e.reason)}) during the round trip`);
  ws.onmessage = onMessage;
  step(`opened ${url}`);

  const commId = hex(16);
  // Bytes that are not UTF-8 (a lone 0xff, 0xfe, a NUL, a cut-off 0xc3), then every byte value.
  const blob = Uint8Array.from([0xff, 0xfe, 0x00, 0xc3, ...Array.from({length: 256}, (_, i) => 255 - i)]);
  const second = new TextEncoder().encode('second');
  const open = message('comm_open', {comm_id: commId, target_name: 'echo', data: {}});
  const opened = reply(open.header.msg_id, "binary comm_msg answering the comm_open");
  ws.send(encode(open, [blob, second]));
  step('sent comm_open with 2 buffers');
  const o = await opened;
  result.opened = summary(o);
  result.opened_ok = o.frame === 'binary' && o.content.data.opened === 2 && o.buffers.length === 2 &&
                     same(o.buffers[0], blob) && same(o.buffers[1], second);
  step(`comm_open answered (${o.frame}, ok: ${result.opened_ok})`);

  const msg = message('comm_msg', {comm_id: commId, data: {method: 'custom'}});
  const answered = reply(msg.header.msg_id, "binary comm_msg answering the comm_msg");
  ws.send(encode(msg, [Uint8Array.from([1, 2, 255, 0])]));
  step('sent comm_msg with [1, 2, 255, 0]');
  const r = await answered;
  result.reply = summary(r);
  result.reversed_ok = r.frame === 'binary' && r.content.data.got === 1 && r.buffers.length === 1 &&
                       same(r.buffers[0], [0, 255, 2, 1]);
  step(`comm_msg answered (${r.frame}, ok: ${result.reversed_ok})`);
  finish(null);
})().catch((e) => finish(String((e && e.message) || e)));
"""


def comm_round_trip(driver, user):
    """The binary comm round trip from the page (see COMM_JS); its result."""
    # Four waits at most (listing, open, two replies): the driver's own limit is beyond them.
    driver.set_script_timeout(4 * COMM_WAIT_S + 30)
    try:
        result = driver.execute_async_script(COMM_JS, user, COMM_WAIT_S * 1000)
    except WebDriverException as e:
        raise FlowError(f"the comm round trip's page script did not finish: {e.msg}") from e
    log(f"comm round trip: {json.dumps(result)}")
    if not isinstance(result, dict):
        raise FlowError(f"the comm round trip's page script returned {result!r}")
    if result.get("error"):
        raise FlowError(f"the binary comm round trip failed: {result['error']} (steps: {result.get('steps')})")
    if not (result.get("opened_ok") and result.get("reversed_ok")):
        raise FlowError(f"the kernel's binary comm replies do not carry the bytes sent: {json.dumps(result)}")
    return result


def add_extra_spec(orrery, config):
    """Adds the extra kernelspec the operator's way: `orrery config add-item` + `config reload`."""
    for args in (
        *(["config", "add-item", "kernels.specs", spec] for spec in EXTRA_SPECS),
        ["config", "reload"],
    ):
        try:
            p = subprocess.run(
                [orrery, "--config", config, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as e:
            raise FlowError(f"`orrery {' '.join(args)}` did not finish within 60 s") from e
        if p.returncode != 0:
            raise FlowError(f"`orrery {' '.join(args)}` exited {p.returncode}:\n{p.stdout}{p.stderr}")
        log(f"orrery {' '.join(args)}: ok")


def see_extra_spec_in_launcher(driver, hub, user):
    """Reloads JupyterLab with a fresh workspace (a launcher) and waits for the extra spec's card."""
    # `?reset` starts from an empty workspace, so the launcher shows instead of the notebook.
    driver.get(f"{hub}/user/{user}/lab?reset")
    wait(driver, 90, EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-LabShell")), "the reloaded JupyterLab shell")
    label = EXTRA_SPEC_LABEL
    card = (
        By.XPATH,
        f"//*[contains(concat(' ', normalize-space(@class), ' '), ' jp-LauncherCard ')]"
        f"[@title='{label}' or .//*[normalize-space()='{label}']]",
    )
    wait(driver, 90, EC.visibility_of_element_located(card), f"a {label!r} card in the reloaded launcher")
    labels = launcher_labels(driver)
    log(f"launcher after the reload: {labels}")
    return labels


def save_failure(driver, artifacts, suffix=""):
    """The screenshot, page and console of a failed flow (`failure<suffix>.png`, …)."""
    if driver is None:
        return
    for name, action in (
        (f"failure{suffix}.png", lambda p: driver.save_screenshot(p)),
        (f"failure{suffix}.html", lambda p: open(p, "w", encoding="utf-8").write(driver.page_source)),
        (
            f"failure{suffix}-console.log",
            lambda p: open(p, "w", encoding="utf-8").write(
                "\n".join(f"{e.get('level')} {e.get('message')}" for e in driver.get_log("browser"))
            ),
        ),
    ):
        try:
            action(os.path.join(artifacts, name))
        except Exception as e:  # best effort: the browser may be gone
            log(f"could not save {name}: {e}")
    try:
        log(f"failed at {driver.current_url}; artifacts in {artifacts}")
    except Exception:
        pass


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="browser_flow.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("hub")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("artifacts")
    parser.add_argument(
        "--remote-kernels", action="store_true", help="the hub runs kernels.remote = true: do the remote-kernel steps"
    )
    parser.add_argument("--orrery", help="the orrery binary (with --remote-kernels: adds a kernelspec)")
    parser.add_argument("--config", help="the hub's config file (with --remote-kernels)")
    parser.add_argument(
        "--between-cells",
        help="a shell command run after the first cell (e.g. a certificate swap); then a second cell runs "
        "on the same kernel WebSocket, and the summary says whether it had to reconnect",
    )
    parser.add_argument(
        "--trust-spki",
        help="base64 SHA-256 of the hub certificate's public key: this browser (and no other) trusts it",
    )
    args = parser.parse_args(argv[1:])
    if args.remote_kernels and not (args.orrery and args.config):
        parser.error("--remote-kernels needs --orrery BIN and --config PATH (to add a kernelspec)")
    args.hub = args.hub.rstrip("/")
    return args


def local_flow(driver, args, timings):
    """Spawn-pending page, JupyterLab, `print(6*7)` in a notebook."""
    user, artifacts = args.user, args.artifacts
    start_server(driver)
    t_start = time.monotonic()
    pending = see_spawn_pending(driver, user, artifacts)
    lab_url = land_in_lab(driver, user)
    timings["start_to_lab_s"] = round(time.monotonic() - t_start, 2)
    open_notebook(driver)
    t_cell = time.monotonic()
    out = run_cell(driver, 0, "print(6*7)")
    if out != "42":
        raise FlowError(f"the cell printed {out!r}, not '42'")
    timings["cell_s"] = round(time.monotonic() - t_cell, 2)
    shot = os.path.join(artifacts, "jupyterlab.png")
    driver.save_screenshot(shot)
    log(f"screenshot {shot}")
    summary = {"spawn_pending_seen": True, "spawn_pending": pending, "lab_url": lab_url, "output": out}
    if args.between_cells:
        summary.update(second_cell_after(driver, args.between_cells))
    else:
        summary["hub_menu"] = hub_menu(driver, args.hub, user)
    return summary


def hub_menu(driver, hub, user):
    """JupyterLab's hub menu: File > Hub Control Panel opens the hub's home page in a new tab;
    "Restart Server" (the hub extension's hub:restart, which has no menu item in this JupyterLab)
    opens the URL the extension builds from the page config, hubPrefix + "spawn" (+ user/server),
    which for a running server leads back into JupyterLab."""
    lab_window = driver.current_window_handle
    click_when_ready(driver, 20, (By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space()='File']"), "the File menu")
    click_when_ready(
        driver, 20, (By.XPATH, "//li[contains(@class,'lm-Menu-item')][.//div[normalize-space()='Hub Control Panel']]"),
        "File > Hub Control Panel",
    )
    wait(driver, 20, lambda d: len(d.window_handles) > 1, "the control panel's tab")
    driver.switch_to.window([h for h in driver.window_handles if h != lab_window][0])
    wait(driver, 20, EC.url_contains("/hub/home"), "the hub's home page in the new tab")
    wait(driver, 20, EC.presence_of_element_located((By.ID, "server-heading")), "the home page")
    control_panel = {"url": driver.current_url, "running": "running" in driver.page_source}
    log(f"Hub Control Panel: {control_panel}")
    driver.close()
    driver.switch_to.window(lab_window)
    config = json.loads(
        driver.execute_script("return document.getElementById('jupyter-config-data').textContent")
    )
    prefix = config.get("hubPrefix", "")
    server = config.get("hubServerName", "")
    restart = prefix.rstrip("/") + "/spawn"
    if server:
        restart += f"/{config.get('hubUser', '')}/{server}"
    driver.get(config.get("hubHost", "") + restart if config.get("hubHost") else hub + restart)
    wait(driver, 60, EC.url_contains(f"/user/{user}/lab"), "JupyterLab again after Restart Server's URL")
    wait(driver, 90, EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-LabShell")), "the JupyterLab shell")
    log(f"Restart Server ({restart}) led to {driver.current_url}")
    return {"control_panel": control_panel, "restart_url": restart, "after_restart": driver.current_url}


def kernel_websocket_starts(driver):
    """How many kernel WebSockets JupyterLab started since the last call (it logs each)."""
    return sum(
        1
        for e in driver.get_log("browser")
        if "Starting WebSocket" in e.get("message", "") and "/api/kernels/" in e.get("message", "")
    )


def second_cell_after(driver, command):
    """Run `command`, then a second cell; report its output and any kernel WebSocket restart."""
    kernel_websocket_starts(driver)  # forget what came before
    log(f"between cells: {command}")
    subprocess.run(command, shell=True, check=True)
    out = run_cell(driver, 1, "print(6*8)")
    restarts = kernel_websocket_starts(driver)
    log(f"second cell printed {out!r}; kernel WebSocket starts since the command: {restarts}")
    return {"second_output": out, "kernel_ws_starts_after_command": restarts}


def remote_flow(driver, args, timings):
    """JupyterLab on remote kernels: the kernel's hostname, a binary comm round trip from the
    page, and a kernelspec added at runtime showing in the launcher."""
    hub, user, artifacts = args.hub, args.user, args.artifacts
    start_server(driver)
    t_start = time.monotonic()
    pending_seen = note_spawn_pending(driver, user)
    lab_url = land_in_lab(driver, user)
    timings["start_to_lab_s"] = round(time.monotonic() - t_start, 2)
    wait(
        driver,
        90,
        EC.presence_of_element_located((By.CSS_SELECTOR, '.jp-LauncherCard[title^="Python 3"]')),
        "the launcher's Python 3 cards",
    )
    before = launcher_labels(driver)
    log(f"launcher before adding a kernelspec: {before}")
    open_notebook(driver)
    t_cell = time.monotonic()
    hostname = run_cell(driver, 0, HOSTNAME_CODE)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", hostname):
        raise FlowError(f"the hostname cell printed {hostname!r}, not a hostname")
    timings["hostname_cell_s"] = round(time.monotonic() - t_cell, 2)
    t_comm = time.monotonic()
    printed = run_cell(driver, 1, ECHO_TARGET_CODE, wants_output=False)
    if printed:
        raise FlowError(f"registering the echo comm target printed {printed!r}")
    comm = comm_round_trip(driver, user)
    timings["comm_s"] = round(time.monotonic() - t_comm, 2)
    shot = os.path.join(artifacts, "jupyterlab-remote.png")
    driver.save_screenshot(shot)
    log(f"screenshot {shot}")
    t_spec = time.monotonic()
    add_extra_spec(args.orrery, args.config)
    after = see_extra_spec_in_launcher(driver, hub, user)
    timings["extra_spec_s"] = round(time.monotonic() - t_spec, 2)
    shot = os.path.join(artifacts, "launcher-remote.png")
    driver.save_screenshot(shot)
    log(f"screenshot {shot}")
    return {
        "spawn_pending_seen": pending_seen,
        "lab_url": lab_url,
        "output": hostname,
        "kernel_id": comm.get("kernel_id"),
        "comm": comm,
        "launcher_before": before,
        "launcher_after": after,
        "extra_spec_in_launcher": EXTRA_SPEC_LABEL in after,
    }


def main(argv):
    args = parse_args(argv)
    artifacts = args.artifacts
    os.makedirs(artifacts, exist_ok=True)
    for stale in (
        "spawn-pending.png",
        "jupyterlab.png",
        "jupyterlab-remote.png",
        "launcher-remote.png",
        "failure.png",
        "failure.html",
        "failure-console.log",
    ):
        try:
            os.remove(os.path.join(artifacts, stale))
        except FileNotFoundError:
            pass
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            log(f"{path} is missing: install Debian's chromium and chromium-driver")
            return 1

    driver = None
    t0 = time.monotonic()
    timings = {}
    with tempfile.TemporaryDirectory(prefix="orrery-chromium-") as profile:
        try:
            driver = make_driver(profile, args.trust_spki)
            login(driver, args.hub, args.user, args.password)
            timings["login_s"] = round(time.monotonic() - t0, 2)
            flow = remote_flow if args.remote_kernels else local_flow
            summary = flow(driver, args, timings)
            timings["total_s"] = round(time.monotonic() - t0, 2)
            summary["timings"] = timings
            print(json.dumps(summary), flush=True)
            return 0
        except FlowError as e:
            log(f"FAILED: {e}")
            save_failure(driver, artifacts)
            return 1
        except Exception as e:
            log(f"FAILED with an unexpected error: {e!r}")
            traceback.print_exc(file=sys.stderr)
            save_failure(driver, artifacts)
            return 1
        finally:
            if driver is not None:
                try:
                    driver.quit()
                except Exception:
                    pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
