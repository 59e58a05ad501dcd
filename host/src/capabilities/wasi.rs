//! WASI 0.2 for components: environment, files, and stdout/stderr to the log.
//!
//! The WASI interfaces themselves are wasmtime-wasi's; this capability decides
//! what each instance's [`WasiCtx`] contains, from spin.toml:
//! - `[component.X] environment` becomes the guest environment (nothing of
//!   the host's environment leaks in);
//! - `files` directory mounts are preopened read-only, as in Spin;
//! - stdout and stderr become host log lines tagged with the component id,
//!   within the span of the request that caused them (its request id and
//!   trace id), so a component's `println!` shows up next to that request;
//! - sockets are not granted: outbound traffic goes through wasi:http (and
//!   later the Postgres/Redis capabilities), where allowed_outbound_hosts is
//!   enforced.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::manifest::Component;

/// What every instance of one component gets: built once at load time.
#[derive(Clone, Debug)]
pub struct Wasi {
    component_id: Arc<str>,
    environment: Vec<(String, String)>,
    /// (host directory, guest path) pairs.
    mounts: Vec<(std::path::PathBuf, String)>,
}

impl Wasi {
    pub fn new(component: &Component) -> Result<Self> {
        let mut mounts = Vec::new();
        for mount in &component.files {
            if !mount.source.is_dir() {
                anyhow::bail!(
                    "[component.{}] files: {} is not a directory; bazaar mounts directories \
                     (`files = [{{ source = \"dir\", destination = \"/\" }}]`)",
                    component.id,
                    mount.source.display()
                );
            }
            mounts.push((mount.source.clone(), mount.destination.clone()));
        }
        Ok(Self {
            component_id: component.id.as_str().into(),
            environment: component.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            mounts,
        })
    }

    /// The per-instance WASI context.
    pub fn instance(&self) -> Result<WasiCtx> {
        let mut builder = WasiCtx::builder();
        builder
            .envs(&self.environment)
            .stdout(LogStream::new(self.component_id.clone(), "stdout"))
            .stderr(LogStream::new(self.component_id.clone(), "stderr"));
        for (host, guest) in &self.mounts {
            builder
                .preopened_dir(host, guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("mounting {} at {guest}", host.display()))?;
        }
        Ok(builder.build())
    }
}

/// A guest output stream that becomes log lines tagged with the component.
#[derive(Clone)]
struct LogStream {
    component_id: Arc<str>,
    stream: &'static str,
    /// The span current when the instance was made: its request's. The
    /// guest's writes are flushed by tasks of wasmtime-wasi's own, outside
    /// it, so each line enters it again.
    span: tracing::Span,
}

impl LogStream {
    fn new(component_id: Arc<str>, stream: &'static str) -> Self {
        Self { component_id, stream, span: tracing::Span::current() }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { target: self.clone(), pending: Vec::new() })
    }
}

/// Buffers bytes until a newline, then logs the line. A partial last line is
/// logged when the guest's stream is dropped.
struct LineWriter {
    target: LogStream,
    pending: Vec<u8>,
}

/// A guest that never writes a newline must not grow host memory without end.
const MAX_LINE: usize = 16 * 1024;

impl LineWriter {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        self.target.span.in_scope(|| {
            tracing::info!(target: "component", component = %self.target.component_id, stream = self.target.stream, "{text}");
        });
    }

    fn drain_lines(&mut self) {
        while let Some(newline) = self.pending.iter().position(|b| *b == b'\n') {
            let rest = self.pending.split_off(newline + 1);
            let line = std::mem::replace(&mut self.pending, rest);
            self.emit(&line[..line.len() - 1]);
        }
        if self.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        self.drain_lines();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}
