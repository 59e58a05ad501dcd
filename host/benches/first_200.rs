//! Start-up time for `make bench`: starts a server command and measures the
//! time from spawning it to its first `200 OK` on a URL, then stops it.
//!
//! `first_200 URL -- COMMAND [ARGS...]` prints the milliseconds on stdout.
//! The URL is polled every millisecond; a refused connection or any other
//! status just means "not yet". The command's output goes to stderr, so a
//! server that fails to start shows why. Gives up after two minutes.
//!
//! Under `cargo bench` it has nothing to measure by itself and exits.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GIVE_UP: Duration = Duration::from_secs(120);

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, command) = match args.iter().position(|a| a == "--") {
        Some(i) if i == 1 && args.len() > 2 => (&args[0], &args[2..]),
        _ if args.iter().any(|a| a == "--bench") => {
            println!("first_200 is a tool of scripts/bench/bench.sh (make bench); nothing to measure on its own");
            return Ok(());
        }
        _ => anyhow::bail!("usage: first_200 URL -- COMMAND [ARGS...]"),
    };
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build()?;
    let started = Instant::now();
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::from(std::io::stderr()))
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", command[0]))?;
    let outcome = loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == reqwest::StatusCode::OK
        {
            break Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("{} exited ({status}) before answering 200 on {url}", command[0]));
        }
        if started.elapsed() > GIVE_UP {
            break Err(anyhow::anyhow!("no 200 from {url} after {GIVE_UP:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    println!("{:.1}", outcome?.as_secs_f64() * 1000.0);
    Ok(())
}
