//! What any server pays on this machine before doing any XMPP: a server that only answers
//! ROUNDS small messages per connection (as many round trips as a login), and a relay that
//! only copies bytes from one connection to its partner (a one-to-one message), measured
//! like tern-load measures a server (utime+stime from /proc over the run, divided by the
//! operations). A measurement tool for docs/benchmarks/README.md, not part of Tern:
//! it panics on any error.
//!
//!   taskset -c 0 floor server &   taskset -c 1 floor client PID RATE COUNT
//!   taskset -c 0 floor relay &    taskset -c 1 floor messages PID RATE COUNT
//!
//! The same with TLS 1.3: see `tls.rs`.
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod tls;

const ROUNDS: usize = 9;

fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks * 10_000.0
}

/// Copies what `from` sends to `to` until either side ends.
async fn relay<R, W>(from: &mut R, to: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tls_client_args = || -> (u32, f64, usize) {
        (
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        )
    };
    let connections =
        |default: usize| -> usize { args.get(5).map_or(default, |n| n.parse().unwrap()) };
    match args[1].as_str() {
        "tls-server" => return rt.block_on(tls::server()),
        "tls-logins" => {
            let (pid, rate, count) = tls_client_args();
            return rt.block_on(tls::logins(pid, rate, count));
        }
        "tls-messages" => {
            let (pid, rate, count) = tls_client_args();
            return rt.block_on(tls::messages(pid, rate, count, connections(50)));
        }
        "tls-requests" => {
            let (pid, rate, count) = tls_client_args();
            return rt.block_on(tls::requests(pid, rate, count, connections(20)));
        }
        _ => {}
    }
    if args[1] == "relay" {
        // Connections are paired in accept order: whatever the first of a pair sends is
        // written to the second (a one-to-one message, minus XMPP and TLS).
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:27002")
                .await
                .unwrap();
            loop {
                let (mut a, _) = l.accept().await.unwrap();
                let (mut b, _) = l.accept().await.unwrap();
                a.set_nodelay(true).unwrap();
                b.set_nodelay(true).unwrap();
                tokio::spawn(async move { relay(&mut a, &mut b).await });
            }
        });
    } else if args[1] == "messages" {
        let pid: u32 = args[2].parse().unwrap();
        let rate: f64 = args[3].parse().unwrap();
        let n: usize = args[4].parse().unwrap();
        let pairs: usize = 50;
        rt.block_on(async {
            let mut senders = Vec::new();
            let mut receivers = Vec::new();
            for _ in 0..pairs {
                let a = tokio::net::TcpStream::connect("127.0.0.1:27002")
                    .await
                    .unwrap();
                let b = tokio::net::TcpStream::connect("127.0.0.1:27002")
                    .await
                    .unwrap();
                a.set_nodelay(true).unwrap();
                senders.push(a);
                receivers.push(b);
            }
            let total = n;
            let mut readers = Vec::new();
            for mut b in receivers {
                let expect = total / pairs * 200;
                readers.push(tokio::spawn(async move {
                    let mut buf = [0u8; 16384];
                    let mut got = 0;
                    while got < expect {
                        got += b.read(&mut buf).await.unwrap();
                    }
                }));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = cpu_us(pid);
            let start = Instant::now();
            for k in 0..total {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                senders[k % pairs].write_all(&[b'm'; 200]).await.unwrap();
            }
            for r in readers {
                r.await.unwrap();
            }
            let after = cpu_us(pid);
            println!(
                "{} messages of 200 bytes at {}/s over {} pairs: server CPU {:.1} us per message",
                total,
                rate,
                pairs,
                (after - before) / total as f64
            );
        });
    } else if args[1] == "server" {
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:27001")
                .await
                .unwrap();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let reply = [b'x'; 200];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                        if s.write_all(&reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    } else {
        let pid: u32 = args[2].parse().unwrap();
        let rate: f64 = args[3].parse().unwrap();
        let n: usize = args[4].parse().unwrap();
        rt.block_on(async {
            let before = cpu_us(pid);
            let start = Instant::now();
            let mut tasks = Vec::new();
            for k in 0..n {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                tasks.push(tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect("127.0.0.1:27001")
                        .await
                        .unwrap();
                    s.set_nodelay(true).unwrap();
                    let mut buf = [0u8; 4096];
                    for _ in 0..ROUNDS {
                        s.write_all(&[b'y'; 150]).await.unwrap();
                        let mut got = 0;
                        while got < 200 {
                            got += s.read(&mut buf).await.unwrap();
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let after = cpu_us(pid);
            println!(
                "{} connections x {} round trips at {}/s: server CPU {:.0} us per connection",
                n,
                ROUNDS,
                rate,
                (after - before) / n as f64
            );
        });
    }
}
