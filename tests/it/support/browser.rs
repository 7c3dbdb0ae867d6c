//! A small harness that drives a real headless Chromium for end-to-end tests.
//!
//! Chromium is started with `--remote-debugging-pipe` and spoken to in the Chrome DevTools Protocol over that
//! pipe: commands go to the child's fd 3 and answers come from its fd 4, each message JSON followed by a NUL
//! byte. A reader thread splits the answers and hands them over a channel, so every wait has a deadline: a hung
//! browser fails the test instead of stalling it. Chromium's stdout and stderr go to `chromium.log` in the
//! profile folder, and panics quote its tail.
//!
//! ```ignore
//! let profile = tempfile::tempdir().unwrap(); // declared first, so it outlives the browser
//! let Some(mut browser) = Browser::open(profile.path(), &url) else { return }; // no Chromium here
//! let n = browser.eval("document.querySelectorAll('li').length", Duration::from_secs(10));
//! ```
//!
//! It needs only std and serde_json; the four libc calls it makes are declared below.

use std::fs::File;
use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where Chromium may be installed.
const BINARIES: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// The flags every browser starts with (besides `--user-data-dir`).
const FLAGS: [&str; 11] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=900,1200",
    "--remote-debugging-pipe",
    "--allow-file-access-from-files",
];

/// How long starting Chromium and loading the first page may take: generous, for busy machines.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long dropping a browser waits for it to close before killing it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

const F_DUPFD: c_int = 0;
const SIGKILL: c_int = 9;

unsafe extern "C" {
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
}

/// A headless Chromium driven over the DevTools protocol through a pipe.
pub struct Browser {
    child: Child,
    commands: PipeWriter,
    messages: Receiver<Value>,
    session: Option<String>,
    next_id: u64,
    log: PathBuf,
    page_enabled: bool,
}

impl Browser {
    /// Starts Chromium headless with its profile in `profile` (created if missing) and loads `url`, waiting for
    /// its load event. Returns None if no chromium binary exists at /usr/bin/chromium or
    /// /usr/bin/chromium-browser; panics if one exists but cannot be driven.
    pub fn open(profile: &Path, url: &str) -> Option<Browser> {
        let binary = BINARIES.into_iter().find(|binary| Path::new(binary).exists())?;
        let mut browser = Browser::spawn(binary, profile);
        let target = browser.page_target();
        let params = json!({"targetId": target, "flatten": true});
        let attached = browser.call("Target.attachToTarget", params, START_TIMEOUT);
        browser.session = attached["sessionId"].as_str().map(str::to_owned);
        browser.goto(url, START_TIMEOUT);
        Some(browser)
    }

    /// Evaluates `expression` in the page (awaitPromise: true, returnByValue: true) and returns the value
    /// (`Null` for `undefined`); panics with the exception text if it throws. Waits at most `timeout` and panics
    /// on timeout (a hung browser must fail the test, never stall it).
    pub fn eval(&mut self, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let id = self.send("Runtime.evaluate", params);
        let start: String = expression.chars().take(100).collect();
        let mut result = self.answer(id, deadline, &format!("Runtime.evaluate of {start:?}"));
        if let Some(details) = result.get("exceptionDetails") {
            let text = exception_text(details);
            panic!("JavaScript threw: {text}\nexpression: {expression}");
        }
        result["result"]["value"].take()
    }

    /// Navigates to `url` and waits, at most `timeout`, for its load event (a same-document navigation, to a
    /// `#fragment`, has none and returns at once); panics if the page cannot be loaded.
    pub fn goto(&mut self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if !self.page_enabled {
            self.call("Page.enable", json!({}), timeout);
            self.call("Page.setLifecycleEventsEnabled", json!({"enabled": true}), timeout);
            self.page_enabled = true;
        }
        let id = self.send("Page.navigate", json!({"url": url}));
        let (what, mut loads) = (format!("loading {url}"), Vec::new());
        let loader = loop {
            let message = self.next(deadline, &what);
            if message["id"] == id {
                break self.navigated(message, url);
            }
            loads.extend(load_of(message));
        };
        while !loader.is_null() && !loads.contains(&loader) {
            loads.extend(load_of(self.next(deadline, &what)));
        }
    }

    /// Checks the answer to `Page.navigate` and returns the id of the document loader it started (`Null` for a
    /// same-document navigation).
    fn navigated(&self, message: Value, url: &str) -> Value {
        let mut result = self.result(message, "Page.navigate");
        if let Some(error) = result["errorText"].as_str() {
            self.fail(&format!("cannot load {url}: {error}"));
        }
        result["loaderId"].take()
    }

    /// Starts the process with its DevTools pipe on fds 3 and 4 and a thread that reads the answers.
    fn spawn(binary: &str, profile: &Path) -> Browser {
        std::fs::create_dir_all(profile).expect("create the Chromium profile folder");
        let log = profile.join("chromium.log");
        let stderr = File::create(&log).expect("create chromium.log");
        let stdout = stderr.try_clone().expect("clone the chromium.log handle");
        let (their_input, commands) = std::io::pipe().expect("create the command pipe");
        let (answers, their_output) = std::io::pipe().expect("create the answer pipe");
        let fds = (their_input.as_raw_fd(), their_output.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank");
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls.
        unsafe { command.pre_exec(move || onto_3_and_4(fds.0, fds.1)) };
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        drop((their_input, their_output));
        let messages = read_messages(answers);
        Browser {
            child,
            commands,
            messages,
            session: None,
            next_id: 0,
            log,
            page_enabled: false,
        }
    }

    /// The id of the first page target, polled for until Chromium has opened its tab.
    fn page_target(&mut self) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let targets = self.call("Target.getTargets", json!({}), START_TIMEOUT);
            let infos = targets["targetInfos"].as_array().into_iter().flatten();
            let page = infos
                .filter(|info| info["type"] == "page")
                .find_map(|info| info["targetId"].as_str());
            match page {
                Some(id) => return id.to_owned(),
                None if Instant::now() > deadline => self.fail("Chromium opened no page"),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends a command (to the page once attached) and returns its `result`, skipping events meanwhile.
    fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let id = self.send(method, params);
        self.answer(id, deadline, method)
    }

    /// Waits until `deadline` for the answer to command `id` (`what`, in messages) and returns its `result`.
    fn answer(&self, id: u64, deadline: Instant, what: &str) -> Value {
        loop {
            let message = self.next(deadline, what);
            if message["id"] == id {
                return self.result(message, what);
            }
        }
    }

    /// Writes a command to the pipe and returns its id.
    fn send(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("serialize a command");
        bytes.push(0);
        if let Err(e) = self.commands.write_all(&bytes) {
            self.fail(&format!("cannot send {method}: {e}"));
        }
        self.next_id
    }

    /// The next message from Chromium; panics once `deadline` passes or the pipe closes.
    fn next(&self, deadline: Instant, waiting_for: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.messages.recv_timeout(left) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => self.fail(&format!("timed out waiting for {waiting_for}")),
            Err(RecvTimeoutError::Disconnected) => {
                self.fail(&format!("Chromium exited while waiting for {waiting_for}"))
            }
        }
    }

    /// The `result` of an answer; panics with its `error` if it has one.
    fn result(&self, mut message: Value, what: &str) -> Value {
        if let Some(error) = message.get("error") {
            self.fail(&format!("{what} failed: {error}"));
        }
        message["result"].take()
    }

    /// Panics with `what` and the tail of Chromium's log, less its noise about the absent D-Bus.
    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().filter(|line| !line.contains(":ERROR:dbus/")).collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        panic!("{what}\n--- tail of {} ---\n{tail}", self.log.display());
    }
}

impl Drop for Browser {
    /// Asks Chromium to close, waits a little for it to go, then kills its whole process group and reaps it.
    fn drop(&mut self) {
        let _ = self.commands.write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let left = || deadline.saturating_duration_since(Instant::now());
        // Drain the answers until the pipe closes, which says Chromium has gone.
        while self.messages.recv_timeout(left()).is_ok() {}
        // SAFETY: a plain syscall; the group's leader is our unreaped child, so its id still names our group.
        unsafe { kill(-(self.child.id() as c_int), SIGKILL) };
        let _ = self.child.wait();
    }
}

/// In the forked child: puts `input` on fd 3 and `output` on fd 4, where Chromium looks for its pipe. Both are
/// first copied above 4, so neither `dup2` can overwrite the other's source; the copies `dup2` makes do not
/// close on exec, while the originals do.
fn onto_3_and_4(input: c_int, output: c_int) -> std::io::Result<()> {
    // SAFETY: plain syscalls on descriptors this process owns.
    unsafe {
        let parked = [fcntl(input, F_DUPFD, 5), fcntl(output, F_DUPFD, 5)];
        for (fd, target) in parked.into_iter().zip([3, 4]) {
            if fd < 0 || dup2(fd, target) < 0 || close(fd) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Spawns a thread that splits Chromium's answers on NUL bytes and sends them, parsed, over a channel; the
/// channel disconnects when the pipe closes.
fn read_messages(answers: PipeReader) -> Receiver<Value> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for chunk in BufReader::new(answers).split(0) {
            let Ok(chunk) = chunk else { break };
            let Ok(message) = serde_json::from_slice(&chunk) else {
                continue;
            };
            if sender.send(message).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The `loaderId` of a `Page.lifecycleEvent` that says a document has loaded.
fn load_of(mut message: Value) -> Option<Value> {
    let load = message["method"] == "Page.lifecycleEvent" && message["params"]["name"] == "load";
    load.then(|| message["params"]["loaderId"].take())
}

/// The text of a thrown exception: its description (message and stack), else its value, else the summary.
fn exception_text(details: &Value) -> String {
    let exception = &details["exception"];
    match (exception["description"].as_str(), exception.get("value")) {
        (Some(description), _) => description.to_owned(),
        (None, Some(value)) => value.to_string(),
        (None, None) => details["text"].as_str().unwrap_or("an exception").to_owned(),
    }
}
