//! Logging set-up. Logs carry routes, tenants, key names and outcomes; never values, tokens or
//! key material (the types that hold those print as `[redacted]`).

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use tracing_subscriber::EnvFilter;

use crate::config::{LogArgs, LogFormat};

pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald gets no escape codes.
        .with_ansi(terminal);
    let _ = match args.log_format {
        LogFormat::Text if terminal => builder.try_init(),
        LogFormat::Text => builder.fmt_fields(plain_fields()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// `name=value` fields separated by spaces, the message bare: what the default writes
/// without colours, minus its styling of every field name (through nu_ansi_term even when
/// colours are off), which was more than half the cost of the span every request opens.
fn plain_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| match field.name() {
        "message" => write!(w, "{value:?}"),
        name => write!(w, "{}={value:?}", name.strip_prefix("r#").unwrap_or(name)),
    })
    .delimited(" ")
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
    static ROUTES: OnceLock<RwLock<HashMap<Box<str>, RouteMetrics>>> = OnceLock::new();
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

struct RouteMetrics {
    duration: metrics::Histogram,
    counts: RwLock<HashMap<(http::Method, u16), metrics::Counter>>,
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

    /// Plain fields read as the default's do without colours: the span's fields in braces,
    /// the message bare, then the event's fields.
    #[test]
    fn plain_fields_keep_the_default_shape() {
        // `&File` writes, so an `Arc<File>` is a writer every log line can share.
        let out = Arc::new(tempfile::tempfile().unwrap());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(super::plain_fields())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let route = "/v1/tenants/{tenant}/secrets/{key}";
            let span = tracing::info_span!("request", method = %"GET", route = %route);
            let _inside = span.enter();
            tracing::warn!(tenant = "acme", attempts = 3, "cannot reach it");
        });
        let mut file = &*out;
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(
            text.trim_end(),
            " WARN request{method=GET route=/v1/tenants/{tenant}/secrets/{key}}: \
             tenant_vault::telemetry::tests: cannot reach it tenant=\"acme\" attempts=3"
        );
    }
}
