//! Logging: a `RUST_LOG`-style filter, text or JSON lines, and the node id on every line (also
//! on lines from openraft's own tasks, which no span of ours covers); repeated lines limited
//! per call site ([`rate_limit`]); the last lines kept in memory for support bundles
//! ([`recent`]).

pub mod rate_limit;
pub mod recent;

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the global subscriber. `filter` wins over `RUST_LOG`; the default is `info`.
pub fn init(filter: Option<&str>, format: LogFormat, node_id: u64) -> Result<(), String> {
    let filter = match filter {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|error| format!("invalid --log-level '{directives}': {error}"))?,
        // openraft's info lines narrate every election step; its warnings and errors matter.
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(recent::Tee)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder
            .event_format(TextWithNode {
                node_id,
                inner: format::Format::default()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            })
            .finish()
            .with(rate_limit::RateLimit::new())
            .try_init(),
        LogFormat::Json => builder
            .event_format(JsonWithNode { node_id })
            .finish()
            .with(rate_limit::RateLimit::new())
            .try_init(),
    };
    result.map_err(|error| format!("cannot install the logger: {error}"))
}

/// The standard text format, with `node=<id>` in front.
struct TextWithNode {
    node_id: u64,
    inner: format::Format,
}

impl<S, N> FormatEvent<S, N> for TextWithNode
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "node={} ", self.node_id)?;
        let suppressed = rate_limit::take_suppressed_before();
        if suppressed > 0 {
            write!(writer, "[{suppressed} similar lines suppressed] ")?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

/// One JSON object per line: time, level, target, node_id, the message and fields, and the
/// fields of the spans the event is in.
struct JsonWithNode {
    node_id: u64,
}

impl<S, N> FormatEvent<S, N> for JsonWithNode
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let mut object = serde_json::Map::new();
        object.insert("timestamp_ms".into(), crate::now_ms().into());
        object.insert("level".into(), metadata.level().as_str().into());
        object.insert("target".into(), metadata.target().into());
        object.insert("node_id".into(), self.node_id.into());
        let suppressed = rate_limit::take_suppressed_before();
        if suppressed > 0 {
            object.insert("suppressed_before".into(), suppressed.into());
        }
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> = scope
                .from_root()
                .map(|span| {
                    let extensions = span.extensions();
                    let fields = extensions
                        .get::<FormattedFields<N>>()
                        .map(|fields| fields.fields.as_str().to_string())
                        .unwrap_or_default();
                    serde_json::json!({"name": span.name(), "fields": fields})
                })
                .collect();
            if !spans.is_empty() {
                object.insert("spans".into(), spans.into());
            }
        }
        object.insert("fields".into(), fields.map.into());
        writeln!(writer, "{}", serde_json::Value::Object(object))
    }
}

#[derive(Default)]
struct JsonFields {
    map: serde_json::Map<String, serde_json::Value>,
}

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.map
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.map.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.map.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.map.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.map.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.map.insert(field.name().into(), value.into());
    }
}
