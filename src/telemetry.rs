//! Logging set-up. Logs carry routes, tenants, key names and outcomes; never values, tokens or
//! key material (the types that hold those print as `[redacted]`).

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use tracing_subscriber::EnvFilter;

use crate::config::{LogArgs, LogFormat};

/// The per-request maps: a seeded foldhash, not SipHash (keys are route templates and
/// methods, never a client's text).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub fn init(args: &LogArgs) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if matches!(args.log_format, LogFormat::Text) && !terminal {
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = plain_text(&args.log, std::io::stderr).try_init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter(&args.log))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald gets no escape codes.
        .with_ansi(terminal);
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The `--log` directives, or `info` when they do not parse.
fn env_filter(directives: &str) -> EnvFilter {
    EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The plain-text log (no terminal): what `init`'s builder makes, with `PlainFields` and
/// without colours, plus the request span's fields written up front (`RequestSpanFields`).
fn plain_text<W>(directives: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry()
        .with(env_filter(directives))
        .with(RequestSpanFields)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .fmt_fields(PlainFields),
        )
}

/// The name of the span every request opens (`api::request_span`).
pub const REQUEST_SPAN: &str = "request";

/// `name=value` fields separated by spaces, the message bare: what the default writes
/// without colours, minus its styling of every field name (through nu_ansi_term even when
/// colours are off), which was more than half the cost of the span every request opens.
/// Text values are quoted with escapes, as the default does.
struct PlainFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl tracing::field::Visit for PlainVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let gap = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = match field.name() {
            "message" => write!(self.writer, "{gap}{value:?}"),
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.writer, "{gap}{name}={value:?}")
            }
        };
    }
}

/// Writes the request span's fields (method, route template, request id: all text) for
/// `PlainFields`, in one allocation and without `fmt` machinery; the log's own layer then
/// finds them written and skips its formatting, which was most of what opening that span
/// cost on every request. A value that is not plain (see `is_plain`) is left to
/// `PlainFields`, which quotes and escapes it, so nothing a client sends can forge a field.
struct RequestSpanFields;

impl<S> tracing_subscriber::Layer<S> for RequestSpanFields
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        // Ours only: a library's span of the same name keeps the formatter's quoting.
        let meta = attrs.metadata();
        if meta.name() != REQUEST_SPAN || !meta.target().starts_with("tenant_vault") {
            return;
        }
        let mut fields = TextFields {
            out: String::with_capacity(128),
            plain: true,
        };
        attrs.record(&mut fields);
        if !fields.plain {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if extensions
                .get_mut::<tracing_subscriber::fmt::FormattedFields<PlainFields>>()
                .is_none()
            {
                extensions.insert(
                    tracing_subscriber::fmt::FormattedFields::<PlainFields>::new(fields.out),
                );
            }
        }
    }
}

/// `name=value` for text values that are plain; any other value marks the whole not plain.
struct TextFields {
    out: String,
    plain: bool,
}

impl tracing::field::Visit for TextFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if !is_plain(value) {
            self.plain = false;
            return;
        }
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(field.name());
        self.out.push('=');
        self.out.push_str(value);
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {
        self.plain = false;
    }
}

/// Safe to write bare: visible ASCII without a quote or backslash, so it cannot end its
/// field, start another or break the line. (No early exit: the compiler checks many bytes
/// at a time.)
fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().fold(true, |plain, b| {
            plain & (b > b' ') & (b < 0x7f) & (b != b'"') & (b != b'\\')
        })
}

/// The Prometheus recorder behind `GET /metrics`, installed on first use. Metrics carry
/// route templates, sources and outcomes: never a tenant's value, token or key.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first (a host application's).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The HTTP request metrics, their handles registered once per route template (and method
/// and status) and kept: a request neither allocates label strings nor searches the
/// recorder's registry. Routes are the router's templates, so the maps stay small.
pub fn http_request(route: &str, method: &http::Method, status: u16, seconds: f64) {
    static ROUTES: OnceLock<RwLock<FastMap<Box<str>, RouteMetrics>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    {
        let known = routes.read().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = known.get(route) {
            return r.record(route, method, status, seconds);
        }
    }
    let mut all = routes.write().unwrap_or_else(|e| e.into_inner());
    all.entry(route.into())
        .or_insert_with(|| RouteMetrics {
            duration: metrics::histogram!(
                "tenant_vault_http_request_duration_seconds", "route" => route.to_owned()
            ),
            counts: RwLock::default(),
        })
        .record(route, method, status, seconds);
}

/// Counts a secret read by where it was answered from. Every read counts, so the handle of
/// each source is registered once and kept (`metrics::counter!` looks the key up in the
/// recorder's registry on every call). The recorder is installed first, so a handle kept
/// here is never the no-op one.
pub fn secret_read(source: crate::domain::SecretSource) {
    use crate::domain::SecretSource;
    const SOURCES: [SecretSource; 5] = [
        SecretSource::Cache,
        SecretSource::Database,
        SecretSource::Infisical,
        SecretSource::Stale,
        SecretSource::Archive,
    ];
    static COUNTERS: OnceLock<[metrics::Counter; 5]> = OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        prometheus();
        SOURCES
            .map(|s| metrics::counter!("tenant_vault_secret_reads_total", "source" => s.as_str()))
    });
    // Exhaustive: a new source fails to compile here until it has its counter above.
    let at = match source {
        SecretSource::Cache => 0,
        SecretSource::Database => 1,
        SecretSource::Infisical => 2,
        SecretSource::Stale => 3,
        SecretSource::Archive => 4,
    };
    counters[at].increment(1);
}

struct RouteMetrics {
    duration: metrics::Histogram,
    counts: RwLock<FastMap<(http::Method, u16), metrics::Counter>>,
}

impl RouteMetrics {
    fn record(&self, route: &str, method: &http::Method, status: u16, seconds: f64) {
        self.duration.record(seconds);
        let key = (method.clone(), status);
        {
            let known = self.counts.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = known.get(&key) {
                return c.increment(1);
            }
        }
        let mut all = self.counts.write().unwrap_or_else(|e| e.into_inner());
        all.entry(key)
            .or_insert_with(|| {
                metrics::counter!(
                    "tenant_vault_http_requests_total",
                    "method" => method.to_string(),
                    "route" => route.to_owned(),
                    "status" => status.to_string()
                )
            })
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek};
    use std::sync::Arc;

    /// What the plain-text log wrote, each line without its timestamp.
    fn plain_text_log(write: impl FnOnce()) -> Vec<String> {
        // `&File` writes, so an `Arc<File>` is a writer every log line can share.
        let out = Arc::new(tempfile::tempfile().unwrap());
        tracing::subscriber::with_default(super::plain_text("info", out.clone()), write);
        let mut file = &*out;
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text.lines()
            .map(|line| line.split_once(' ').unwrap().1.to_owned())
            .collect()
    }

    /// Plain fields read as the default's do without colours: the span's fields in braces,
    /// the message bare, then the event's fields.
    #[test]
    fn plain_fields_keep_the_default_shape() {
        let lines = plain_text_log(|| {
            let route = "/v1/tenants/{tenant}/secrets/{key}";
            let span = tracing::info_span!("outer", method = %"GET", route = %route);
            let _inside = span.enter();
            tracing::warn!(tenant = "acme", attempts = 3, "cannot reach it");
        });
        assert_eq!(
            lines,
            [
                " WARN outer{method=GET route=/v1/tenants/{tenant}/secrets/{key}}: \
              tenant_vault::telemetry::tests: cannot reach it tenant=\"acme\" attempts=3"
            ]
        );
    }

    /// The request span's fields, written up front, read as the formatter writes a span's
    /// fields; a value that is not plain (a request id a client chose) is quoted and escaped
    /// by the formatter instead, so it cannot forge a field or a line.
    #[test]
    fn the_request_span_reads_the_same_and_cannot_be_forged() {
        let route = "/v1/tenants/{tenant}/secrets/{key}";
        let lines = plain_text_log(|| {
            for request_id in ["0b5e-41", "x route=/forged\n WARN forged", "", "a\"b"] {
                let span = tracing::info_span!(
                    super::REQUEST_SPAN,
                    method = "GET",
                    route = route,
                    request_id = request_id
                );
                let _inside = span.enter();
                tracing::info!("answered");
            }
        });
        let tail = "tenant_vault::telemetry::tests: answered";
        assert_eq!(
            lines,
            [
                format!(" INFO request{{method=GET route={route} request_id=0b5e-41}}: {tail}"),
                format!(
                    " INFO request{{method=\"GET\" route=\"{route}\" \
                     request_id=\"x route=/forged\\n WARN forged\"}}: {tail}"
                ),
                format!(" INFO request{{method=\"GET\" route=\"{route}\" request_id=\"\"}}: {tail}"),
                format!(
                    " INFO request{{method=\"GET\" route=\"{route}\" request_id=\"a\\\"b\"}}: {tail}"
                ),
            ]
        );
    }
}
