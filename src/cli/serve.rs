//! `rsam serve`: logging, then the HTTP service until Ctrl-C / SIGTERM.

use super::args::{LogFormat, ServeArgs};

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    crate::server::run(args.to_config())
}

/// Installs the global log subscriber (once; later calls are no-ops).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // At TRACE (`RUST_LOG=rsam=trace`) each model component's span logs its
    // time when it closes (hiera, fpn-neck, bert, two-way-guidance, ...).
    let span_events = match filter.max_level_hint() {
        Some(tracing::level_filters::LevelFilter::TRACE) => FmtSpan::CLOSE,
        _ => FmtSpan::NONE,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_span_events(span_events);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
