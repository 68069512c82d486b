//! Pieces every scenario uses: logging many clients in, per-connection writer tasks, and
//! the parts of the report that do not depend on the scenario.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use tern::xml::framer::Frame;
use tern::xml::writer::escape;
use tern::xml::Element;

use crate::client::{Session, Target, Writer};
use crate::procfs::{self, Sample, Window};
use crate::stats::{Errors, Latencies};

/// Set-up logins (not measured): all of `indices`, at most `concurrency` at a time, each
/// synchronised. A login that fails is tried once more, alone, after the others (ejabberd
/// resets or stalls about one login in a thousand of such a burst); its first failure stays
/// in `errors`, so the report shows it. A second failure ends the run, since a scenario on
/// fewer clients than asked would report figures for a load it did not apply.
pub async fn login_all(
    target: &Arc<Target>,
    indices: &[u64],
    concurrency: usize,
    errors: &Errors,
    latency: &Latencies,
) -> anyhow::Result<Vec<Session>> {
    let mut sessions = login_many(target, indices, concurrency, None, true, errors, latency).await;
    let failed: Vec<usize> = (0..sessions.len())
        .filter(|&slot| sessions[slot].is_none())
        .collect();
    let retry_errors = Errors::default();
    for slot in failed {
        let again = login_many(
            target,
            &indices[slot..=slot],
            1,
            None,
            true,
            &retry_errors,
            latency,
        )
        .await;
        sessions[slot] = again.into_iter().next().flatten();
    }
    if sessions.iter().any(|s| s.is_none()) {
        anyhow::bail!(
            "set-up failed: {} of {} logins failed twice: first {}, then {}",
            retry_errors.total(),
            indices.len(),
            errors.to_json(),
            retry_errors.to_json()
        );
    }
    Ok(sessions.into_iter().flatten().collect())
}

/// Logs in accounts `indices`: with `rate`, login i starts at `i / rate` seconds (open
/// loop, latency from that due time); without, at most `concurrency` at a time (closed
/// loop, as fast as the server and generator go). Returns the sessions in `indices` order
/// (`None` for the failed ones) and records the login latencies.
pub async fn login_many(
    target: &Arc<Target>,
    indices: &[u64],
    concurrency: usize,
    rate: Option<f64>,
    sync: bool,
    errors: &Errors,
    latency: &Latencies,
) -> Vec<Option<Session>> {
    let permits = match rate {
        Some(_) => Semaphore::MAX_PERMITS,
        None => concurrency.max(1),
    };
    let permits = Arc::new(Semaphore::new(permits));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (slot, &index) in indices.iter().enumerate() {
        let permits = permits.clone();
        let target = target.clone();
        let errors = errors.clone();
        let latency = latency.clone();
        let due = rate.map(|r| start + Duration::from_secs_f64(slot as f64 / r));
        tasks.spawn(async move {
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let started = due.unwrap_or_else(Instant::now);
            match tokio::time::timeout(target.timeout, Session::login(&target, index, sync)).await {
                Ok(Ok(session)) => {
                    latency.record(started.elapsed());
                    (slot, Some(session))
                }
                Ok(Err(err)) => {
                    errors.add(err.stage, &err);
                    (slot, None)
                }
                Err(_) => {
                    errors.add("timeout", "login took longer than --timeout");
                    (slot, None)
                }
            }
        });
    }
    let mut sessions: Vec<Option<Session>> = (0..indices.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((slot, session)) = joined {
            sessions[slot] = session;
        }
    }
    sessions
}

/// What a writer task writes: an operation (counted in `sent` once written) or protocol
/// traffic (answers to the server's IQs, the stream close).
pub enum Out {
    Op(String),
    Other(String),
}

/// A task writing what it receives to one connection, several queued items per write.
/// `sent` counts operations written; the task returns the writer when every sender is
/// gone.
pub fn spawn_writer(
    mut writer: Writer,
    mut rx: mpsc::UnboundedReceiver<Out>,
    sent: Arc<AtomicU64>,
    errors: Errors,
) -> tokio::task::JoinHandle<Writer> {
    tokio::spawn(async move {
        let mut batch = String::new();
        let mut broken = false;
        while let Some(first) = rx.recv().await {
            batch.clear();
            let mut ops = 0u64;
            let mut add = |out: Out, batch: &mut String| match out {
                Out::Op(text) => {
                    ops += 1;
                    batch.push_str(&text);
                }
                Out::Other(text) => batch.push_str(&text),
            };
            add(first, &mut batch);
            for _ in 0..63 {
                match rx.try_recv() {
                    Ok(more) => add(more, &mut batch),
                    Err(_) => break,
                }
            }
            if broken {
                continue;
            }
            let written = async {
                writer.write_all(batch.as_bytes()).await?;
                writer.flush().await
            }
            .await;
            match written {
                Ok(()) => {
                    sent.fetch_add(ops, Ordering::Relaxed);
                }
                Err(err) => {
                    errors.add("write", err);
                    broken = true;
                }
            }
        }
        writer
    })
}

/// The answer a client owes the server for an IQ get or set (a ping, an XEP-0215 push):
/// an empty result, as clients that support the payload give.
pub fn iq_answer(stanza: &Element) -> Option<Out> {
    if stanza.name() != "iq" || !matches!(stanza.attr("type"), Some("get") | Some("set")) {
        return None;
    }
    let id = escape(stanza.attr("id").unwrap_or(""));
    Some(Out::Other(match stanza.attr("from") {
        Some(from) => format!("<iq type='result' id='{id}' to='{}'/>", escape(from)),
        None => format!("<iq type='result' id='{id}'/>"),
    }))
}

/// A logged-in connection driven by a reader task and a writer task.
pub struct Conn {
    pub tx: mpsc::UnboundedSender<Out>,
    writer: tokio::task::JoinHandle<Writer>,
    reader: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Splits the session; `on_stanza` sees every stanza the server sends (IQ gets and
    /// sets are answered before). `sent` counts the [`Out::Op`]s written.
    pub fn start(
        session: Session,
        sent: Arc<AtomicU64>,
        errors: Errors,
        mut on_stanza: impl FnMut(Element, Instant) + Send + 'static,
    ) -> Conn {
        let (mut reader, writer) = session.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = spawn_writer(writer, rx, sent, errors);
        let answers = tx.clone();
        let reader = tokio::spawn(async move {
            loop {
                match reader.next().await {
                    Ok(Some(Frame::Stanza(stanza))) => {
                        let arrived = Instant::now();
                        if let Some(answer) = iq_answer(&stanza) {
                            let _ = answers.send(answer);
                        }
                        on_stanza(stanza, arrived);
                    }
                    Ok(Some(Frame::Open(_) | Frame::Message(_))) => {}
                    Ok(Some(Frame::Close)) | Ok(None) | Err(_) => break,
                }
            }
        });
        Conn { tx, writer, reader }
    }

    /// Whether the server ended the stream (or the connection broke).
    pub fn is_finished(&self) -> bool {
        self.reader.is_finished()
    }

    /// Ends the stream and waits (at most `wait`) for the server to close its side;
    /// returns whether it did.
    pub async fn close(self, wait: Duration) -> bool {
        let _ = self.tx.send(Out::Other("</stream:stream>".into()));
        drop(self.tx);
        let mut reader = self.reader;
        let closed = tokio::time::timeout(wait, &mut reader).await.is_ok();
        if !closed {
            reader.abort();
        }
        if let Ok(mut writer) = self.writer.await {
            let _ = writer.shutdown().await;
        }
        closed
    }
}

/// Closes every connection at once; returns how many the server did not close in `wait`.
pub async fn close_all(conns: Vec<Conn>, wait: Duration) -> u64 {
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(c.close(wait)))
        .collect();
    let mut unclosed = 0;
    for task in tasks {
        if !matches!(task.await, Ok(true)) {
            unclosed += 1;
        }
    }
    unclosed
}

/// Waits until `done()` or `limit` passed; returns whether `done()` became true.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Other processes using more than this many cores during a window make it noisy.
const OTHER_CPU_WARNING: f64 = 0.15;

/// Fields of every report: CPU of server and generator over the measured window,
/// divided by `ops`, and the generator-bound flag.
pub fn base_report(
    scenario: &str,
    label: &str,
    params: Value,
    window: &Window,
    ops: u64,
    have_server: bool,
    warnings: &mut Vec<String>,
) -> serde_json::Map<String, Value> {
    let (server, generator) = window.to_json(ops, have_server);
    if !have_server {
        warnings.push("no --server-pid: server CPU and memory not measured".into());
    }
    if window.generator_bound() {
        warnings.push(format!(
            "generator bound: tern-load used {:.0}% of a core (> {:.0}%); the figures may measure the generator, not the server",
            window.generator_cores() * 100.0,
            procfs::GENERATOR_BOUND_SHARE * 100.0
        ));
    }
    if window.other_cores() > OTHER_CPU_WARNING {
        warnings.push(format!(
            "the rest of the machine used {:.2} cores during the window: the machine was not quiet",
            window.other_cores()
        ));
    }
    let mut report = serde_json::Map::new();
    report.insert("scenario".into(), json!(scenario));
    report.insert("label".into(), json!(label));
    report.insert("params".into(), params);
    report.insert("window_s".into(), json!(procfs::round(window.wall_s, 3)));
    report.insert("ops".into(), json!(ops));
    report.insert("server".into(), server);
    report.insert("generator".into(), generator);
    report.insert("generator_bound".into(), json!(window.generator_bound()));
    report.insert(
        "tls_suites".into(),
        json!(crate::client::negotiated_suites()),
    );
    report.insert(
        "other_cpu_cores".into(),
        json!(procfs::round(window.other_cores(), 3)),
    );
    report
}

/// A sample of the server (or nothing measured when no PID was given).
pub fn sample(server: &[u32]) -> Sample {
    Sample::take(server)
}

/// Warns when the connections wanted may not fit under the open-files limit.
pub fn check_fd_limit(connections: u64, warnings: &mut Vec<String>) {
    if let Some(limit) = procfs::open_files_limit() {
        if connections + 64 > limit {
            warnings.push(format!(
                "open files limit {limit} is below {connections} connections + 64: raise ulimit -n"
            ));
        }
    }
}
