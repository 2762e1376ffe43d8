//! The live cluster page in a real browser: Debian's `chromium`, headless, driven over the
//! Chrome DevTools protocol, against a live 3-node cluster whose master has an API token.
//! The page asks for the token in its form (a wrong one is asked again), keeps it for the
//! session (a reload does not ask), loads with no console errors (but the 401s that made it
//! ask), shows every node, shows a client killed with SIGKILL as `dead` without a reload
//! (it refreshes itself from `/events`), and a screenshot is saved to
//! `target/test-artifacts/live-page.png`. Skips with a notice when chromium is missing
//! (`.ci/run` installs it). Loopback block 127.0.153.x.

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use common::*;

const BLOCK: u8 = 153;

/// The master's API token, typed into the page's form.
const TOKEN: &str = "page-t0ken&x";

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Headless chromium in a process group of its own, ended (the whole group, by its id) when
/// dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Browser {
    fn start(program: &str, profile: &Path) -> Browser {
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(program).args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ]),
            0,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
        Browser {
            child,
            profile: profile.to_path_buf(),
        }
    }

    /// The DevTools port, from the file chromium writes once it listens.
    fn port(&self) -> u16 {
        let file = self.profile.join("DevToolsActivePort");
        wait_for(DEADLINE, || {
            let text = std::fs::read_to_string(&file).ok()?;
            text.lines().next()?.trim().parse().ok()
        })
        .expect("chromium never wrote DevToolsActivePort")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One DevTools session over a WebSocket: calls, and the events that came meanwhile.
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let address = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("ws url");
        let stream = TcpStream::connect(address).expect("connect to DevTools");
        // A blocking handshake (a loaded machine may take a while to answer it), then short
        // reads so that waiting for an answer can also collect events.
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let (ws, _) = tungstenite::client(url, stream).expect("DevTools handshake");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        Cdp {
            ws,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// Reads one message if one comes within the read timeout.
    fn read(&mut self) -> Option<Value> {
        match self.ws.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection: {e}"),
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.ws
            .send(Message::text(request.to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            match self.read() {
                Some(message) if message["id"] == id => {
                    assert!(message.get("error").is_none(), "{method}: {message}");
                    return message["result"].clone();
                }
                Some(event) => self.events.push(event),
                None => {}
            }
        }
        panic!("{method}: no answer within {DEADLINE:?}");
    }

    /// Evaluates `expression` in the page; its value (JSON-serializable).
    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Console errors, uncaught exceptions and error log entries seen so far, but the
    /// browser's network log of a 401 (how the page learns that it needs the token).
    fn errors(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| {
                let method = e["method"].as_str().unwrap_or_default();
                let entry = &e["params"]["entry"];
                let refused = entry["source"] == "network"
                    && entry["text"].as_str().is_some_and(|t| t.contains("401"));
                method == "Runtime.exceptionThrown"
                    || (method == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                    || (method == "Log.entryAdded" && entry["level"] == "error" && !refused)
            })
            .cloned()
            .collect()
    }
}

/// What the page shows for each node: node id -> status, from its SHOW NODES table.
const NODES_SHOWN: &str = "Object.fromEntries([...document.querySelectorAll('#nodes tbody tr')].map(r => [r.dataset.key, r.dataset.status]))";
/// The statuses of the graph's database dots.
const DOTS_SHOWN: &str = "[...document.querySelectorAll('#graph circle[data-db]')].map(c => c.dataset.db + '=' + c.dataset.status).sort()";

fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

#[test]
fn the_live_page_shows_every_node_and_a_killed_client_turning_dead() {
    let Some(program) = chromium() else {
        eprintln!("NOTICE: chromium not installed; skipping the live page test (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let master = start(spec(dir.path(), BLOCK, 1, &[("BO_API_TOKEN", TOKEN)]));
    let mut added = start(spec(dir.path(), BLOCK, 2, &[("BO_DATABASES", "log1,log2")]));
    let _registered = start(spec(
        dir.path(),
        BLOCK,
        3,
        &[("BO_MASTER", "127.0.153.1"), ("BO_DATABASES", "sales")],
    ));
    for db in ["log1", "log2"] {
        ok(
            &master,
            &format!(r#"ADD CLIENT ip="127.0.153.2" db="{db}""#),
        );
    }
    let formed = wait_for(DEADLINE, || {
        let rows = show_cluster(&master);
        let nodes = master.query("SHOW NODES").ok()?;
        (rows.len() == 3
            && rows.iter().all(|r| r.4 == "alive")
            && nodes.iter().filter(|n| n["status"] == "alive").count() == 3)
            .then_some(())
    });
    assert!(
        formed.is_some(),
        "cluster not formed: {:?}",
        show_cluster(&master)
    );

    let profile = tempfile::tempdir().expect("profile dir");
    let browser = Browser::start(program, profile.path());
    let port = browser.port();
    let page_ws = wait_for(DEADLINE, || {
        let list: Value = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
            .call()
            .ok()?
            .into_body()
            .read_json()
            .ok()?;
        list.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
            .as_str()
            .map(str::to_string)
    })
    .expect("no page target in chromium");
    let mut cdp = Cdp::connect(&page_ws);
    for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
        cdp.call(domain, json!({}));
    }
    // Tall enough for the whole page in the screenshot.
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );
    let url = format!("http://{}/", master.http_addr());
    cdp.call("Page.navigate", json!({"url": url}));

    // The node answers 401: the page shows its token form, and asks again after a wrong one.
    let expected = json!({"n153-1": "alive", "n153-2": "alive", "n153-3": "alive"});
    for (typed, note) in [("wrong", ""), (TOKEN, "That token was refused; try again.")] {
        let asked = wait_for(DEADLINE, || {
            let form = cdp.eval("[document.getElementById('token-form').hidden, document.getElementById('token-note').textContent]");
            (form == json!([false, note])).then_some(())
        });
        assert!(
            asked.is_some(),
            "the page did not ask for the token (note {note:?}): {}; errors: {:?}",
            cdp.eval("document.body.innerText"),
            cdp.errors()
        );
        assert_eq!(
            cdp.eval(NODES_SHOWN),
            json!({}),
            "nodes shown without the token"
        );
        let typed = serde_json::to_string(typed).expect("json string");
        cdp.eval(&format!(
            "document.getElementById('token-input').value = {typed}; document.getElementById('token-form').requestSubmit(); 1"
        ));
    }
    let shown_with = |cdp: &mut Cdp| {
        wait_for(DEADLINE, || {
            let nodes = cdp.eval(NODES_SHOWN);
            let live = cdp.eval("document.getElementById('conn').textContent") == "live";
            (nodes == expected && live).then_some(nodes)
        })
    };
    let shown = shown_with(&mut cdp);
    // Every node, alive, with the master's three entries in its graph.
    assert!(
        shown.is_some(),
        "the page never showed every node alive: {}; errors: {:?}",
        cdp.eval(NODES_SHOWN),
        cdp.errors()
    );
    assert_eq!(
        cdp.eval(DOTS_SHOWN),
        json!(["log1=alive", "log2=alive", "sales=alive"])
    );
    assert_eq!(
        cdp.eval("document.getElementById('conn').textContent"),
        "live"
    );

    assert_eq!(
        cdp.eval("sessionStorage.getItem('bocluster-token')"),
        TOKEN,
        "the token is kept for the session"
    );
    // A reload does not ask again: the token was kept (the form stays hidden).
    // (A mark on the old page's window tells the new page from it.)
    cdp.eval("window.beforeReload = true; 1");
    cdp.call("Page.reload", json!({}));
    let reloaded = wait_for(DEADLINE, || {
        let ready = cdp.eval("window.beforeReload === undefined && document.getElementById('conn').textContent === 'live'");
        (ready == json!(true)).then_some(())
    });
    assert!(reloaded.is_some(), "the reloaded page never went live");
    assert!(shown_with(&mut cdp).is_some(), "{}", cdp.eval(NODES_SHOWN));
    assert_eq!(
        cdp.eval("document.getElementById('token-form').hidden"),
        true
    );

    // SIGKILL a client: the page turns it dead by itself, from the event stream.
    added.kill();
    let dead = wait_for(DEADLINE, || {
        let nodes = cdp.eval(NODES_SHOWN);
        let dots = cdp.eval(DOTS_SHOWN);
        (nodes["n153-2"] == "dead" && dots == json!(["log1=dead", "log2=dead", "sales=alive"]))
            .then_some(())
    });
    assert!(
        dead.is_some(),
        "the page never showed the killed client dead: {} {}",
        cdp.eval(NODES_SHOWN),
        cdp.eval(DOTS_SHOWN)
    );
    let events = cdp.eval("[...document.querySelectorAll('#events li')].map(l => l.dataset.event)");
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|n| n == "member-failed")),
        "no member-failed in the page's events: {events}"
    );

    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("base64 screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifact dir");
    let path = artifacts.join("live-page.png");
    std::fs::write(&path, &png).expect("write screenshot");
    println!("screenshot: {}", path.display());

    // Read the last events, then: no console errors from the start to here.
    cdp.eval("1");
    assert_eq!(
        cdp.errors(),
        Vec::<Value>::new(),
        "console errors on the page"
    );
    drop(cdp);
    drop(browser);
}
