//! Logging set-up. Logs carry routes, tenants, key names and outcomes; never values, tokens or
//! key material (the types that hold those print as `[redacted]`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogArgs, LogFormat};

pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
