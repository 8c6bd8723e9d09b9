//! Logging: level, text or JSON lines, stdout or stderr (Litestream's `logging:` keys), with
//! repeated warnings rate-limited and registered secrets masked in every line.
//!
//! - JSON lines use Litestream's (Go slog) keys: `time`, `level`, `msg`, then the fields.
//! - A WARN or ERROR line identical to one printed less than a window ago (60 s; hidden
//!   `$WALSTREAM_LOG_REPEAT_WINDOW` for tests) is held back; the next one printed after the
//!   window says how many were held back (`repeated=N` in text, `"repeated":N` in JSON).
//! - [`add_secret`] registers a value (a secret key, a password) that is then replaced by
//!   `[REDACTED]` wherever it appears in a line, whichever crate logged it, at any level.
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Standard output (Litestream's default).
    Stdout,
    /// Standard error.
    #[default]
    Stderr,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// Parses `logging.type` (`text` or `json`; anything else is text, as in Litestream).
    pub fn parse(s: Option<&str>) -> Format {
        match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            Some("json") => Format::Json,
            _ => Format::Text,
        }
    }
}

fn secrets() -> &'static RwLock<Vec<String>> {
    static S: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    S.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret: it never appears in a log line (values shorter than 4 characters are
/// ignored: masking them would garble every line).
pub fn add_secret(s: &str) {
    let s = s.trim();
    if s.len() < 4 {
        return;
    }
    if let Ok(mut v) = secrets().write() {
        if !v.iter().any(|x| x == s) {
            v.push(s.to_string());
            // Longest first, so that a secret containing another is masked whole.
            v.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }
}

/// `line` with every registered secret replaced by `[REDACTED]`.
pub fn redact(line: &str) -> String {
    let Ok(v) = secrets().read() else {
        return line.to_string();
    };
    let mut out = line.to_string();
    for s in v.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[REDACTED]");
        }
    }
    out
}

/// Holds back repeated WARN and ERROR lines.
#[derive(Debug)]
pub struct Limiter {
    window: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Limiter {
    /// A limiter with this window.
    pub fn new(window: Duration) -> Limiter {
        Limiter {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// For a line with this key: `None` to hold it back, else how many were held back before it.
    pub fn check(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, held)) = seen.get_mut(key) {
            if now.duration_since(*at) < self.window {
                *held += 1;
                return None;
            }
            let n = *held;
            *at = now;
            *held = 0;
            return Some(n);
        }
        if seen.len() >= 4096 {
            let window = self.window;
            seen.retain(|_, (at, _)| now.duration_since(*at) < window);
        }
        seen.insert(key.to_string(), (now, 0));
        Some(0)
    }
}

/// The writer behind the formatter: one buffer per event, masked, rate-limited, then written
/// whole to stdout or stderr.
#[derive(Clone)]
pub struct LineWriter {
    out: Output,
    format: Format,
    limiter: Arc<Limiter>,
}

/// One event's bytes.
pub struct LineBuf {
    w: LineWriter,
    limited: bool,
    buf: Vec<u8>,
}

impl Write for LineBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The rate limiter's key: the line without its time.
fn line_key(format: Format, line: &str) -> String {
    match format {
        Format::Text => line
            .trim_start()
            .split_once(' ')
            .map_or(line, |(_, rest)| rest)
            .trim()
            .to_string(),
        Format::Json => match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.remove("time");
                serde_json::Value::Object(m).to_string()
            }
            _ => line.to_string(),
        },
    }
}

fn annotate(format: Format, line: &str, n: u64) -> String {
    let body = line.trim_end_matches('\n');
    match format {
        Format::Text => format!("{body} repeated={n}\n"),
        Format::Json => match body.strip_suffix('}') {
            Some(open) if body.starts_with('{') => format!("{open},\"repeated\":{n}}}\n"),
            _ => format!("{body}\n"),
        },
    }
}

impl Drop for LineBuf {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut line = redact(&String::from_utf8_lossy(&self.buf));
        if self.limited {
            match self.w.limiter.check(&line_key(self.w.format, &line)) {
                None => return,
                Some(0) => {}
                Some(n) => line = annotate(self.w.format, &line, n),
            }
        }
        let _ = match self.w.out {
            Output::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Output::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
        };
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = LineBuf;
    fn make_writer(&'a self) -> LineBuf {
        LineBuf {
            w: self.clone(),
            limited: false,
            buf: Vec::new(),
        }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineBuf {
        LineBuf {
            w: self.clone(),
            limited: *meta.level() <= Level::WARN,
            buf: Vec::new(),
        }
    }
}

/// JSON lines with Litestream's keys.
struct JsonFormat;

#[derive(Default)]
struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let key = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.0.insert(key.into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let key = if field.name() == "message" {
            "msg"
        } else {
            field.name()
        };
        self.0.insert(key.into(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        let mut v = JsonVisitor::default();
        event.record(&mut v);
        let msg = v.0.remove("msg").unwrap_or_else(|| "".into());
        // time, level and msg first, as Go's slog writes them; then the fields.
        let mut line = format!(
            "{{\"time\":{},\"level\":{},\"msg\":{}",
            serde_json::Value::from(time),
            serde_json::Value::from(level),
            msg
        );
        for (k, val) in v.0 {
            if k == "time" || k == "level" {
                continue;
            }
            line.push(',');
            line.push_str(&serde_json::Value::from(k).to_string());
            line.push(':');
            line.push_str(&val.to_string());
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// The window for repeated lines: 60 s, or `$WALSTREAM_LOG_REPEAT_WINDOW` (tests).
fn repeat_window() -> Duration {
    std::env::var("WALSTREAM_LOG_REPEAT_WINDOW")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// The filter for a level name (`-log-level`, `$LOG_LEVEL`, `logging.level`): Litestream's names
/// in any case; `info` keeps object_store's own retry lines at WARN.
pub fn filter_for(level: &str) -> tracing_subscriber::EnvFilter {
    let level = level.trim().to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn".to_string(),
        // object_store logs each of its own quick retries at INFO; walstream reports the
        // outcome itself (one line when the store goes away, one when it is back).
        "info" => "info,object_store=warn".to_string(),
        _ => level,
    };
    tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,object_store=warn"))
}

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(level: &str, format: Format, out: Output) {
    use std::io::IsTerminal;
    let writer = LineWriter {
        out,
        format,
        limiter: Arc::new(Limiter::new(repeat_window())),
    };
    let ansi = match out {
        Output::Stdout => std::io::stdout().is_terminal(),
        Output::Stderr => std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter_for(level));
    let _ = match format {
        Format::Text => builder.with_ansi(ansi).with_target(false).try_init(),
        Format::Json => builder.event_format(JsonFormat).try_init(),
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limiter_holds_back_repeats_within_the_window_and_counts_them() {
        let l = Limiter::new(Duration::from_millis(200));
        assert_eq!(l.check("a"), Some(0));
        assert_eq!(l.check("a"), None);
        assert_eq!(l.check("a"), None);
        assert_eq!(l.check("b"), Some(0));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(l.check("a"), Some(2));
        assert_eq!(l.check("a"), None);
    }

    #[test]
    fn line_key_ignores_the_time() {
        assert_eq!(
            line_key(Format::Text, "2026-01-01T00:00:00Z  WARN x y\n"),
            line_key(Format::Text, "2026-01-01T00:00:05Z  WARN x y\n")
        );
        assert_eq!(
            line_key(Format::Json, r#"{"time":"1","level":"WARN","msg":"m"}"#),
            line_key(Format::Json, r#"{"time":"2","level":"WARN","msg":"m"}"#)
        );
        let a = annotate(Format::Json, "{\"msg\":\"m\"}\n", 3);
        let v: serde_json::Value = serde_json::from_str(a.trim()).unwrap();
        assert_eq!(v["repeated"], 3);
    }

    #[test]
    fn redact_masks_registered_secrets() {
        add_secret("hunter2-secret-value");
        add_secret("ab");
        assert_eq!(redact("key=hunter2-secret-value ab"), "key=[REDACTED] ab");
    }
}
