//! The OTLP logs exporter against a real gRPC LogsService on loopback.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc as tmpsc;
use tokio_stream::wrappers::TcpListenerStream;
use weft_api::otlp::logs_service::logs_service_server::{LogsService, LogsServiceServer};
use weft_api::otlp::logs_service::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use weft_api::{LogFormat, LogOperator, LogPart};

use super::super::format::Formatter;
use super::super::tests::{Fixture, parse};
use super::*;

/// A collector that forwards every request to the test; `stall` never answers.
struct Collector {
    tx: tmpsc::UnboundedSender<ExportLogsServiceRequest>,
    stall: bool,
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let _ = self.tx.send(request.into_inner());
        if self.stall {
            std::future::pending::<()>().await;
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn collector(stall: bool) -> (String, tmpsc::UnboundedReceiver<ExportLogsServiceRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tmpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LogsServiceServer::new(Collector { tx, stall }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr.to_string(), rx)
}

fn settings(queue: usize, batch: usize) -> ExportSettings {
    ExportSettings {
        queue,
        batch,
        flush_interval: Duration::from_millis(50),
        timeout: Duration::from_secs(30),
    }
}

fn attr<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    kvs.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.to_string())
}

#[tokio::test]
async fn records_reach_the_collector_with_body_attributes_and_resource() {
    let (endpoint, mut rx) = collector(false).await;
    let stats = Arc::new(LogStats::default());
    let exporter = OtlpLogs::start(
        &endpoint,
        resource("httpbin.foo", "httpbin-0.foo", "foo"),
        settings(16, 8),
        stats.clone(),
    )
    .expect("a runtime is running");

    let f = Fixture::new();
    let mut rec = f.http();
    rec.span = Some(&f.span);
    let json = Formatter::new(
        &LogFormat::Json(vec![
            ("code".into(), parse("%RESPONSE_CODE%")),
            ("path".into(), parse("%REQ(:PATH)%")),
            ("sni".into(), parse("%REQUESTED_SERVER_NAME%")),
        ]),
        "h",
    );
    let text = Formatter::new(
        &LogFormat::Text(vec![
            LogPart::Op {
                op: LogOperator::Protocol,
                max_len: None,
            },
            LogPart::Text(" done\n".into()),
        ]),
        "h",
    );
    exporter.offer(record(&json.http(&rec), rec.start, rec.span));
    exporter.offer(record(&text.http(&rec), rec.start, None));

    let mut records = Vec::new();
    let mut resource_attrs = Vec::new();
    while records.len() < 2 {
        let req = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the collector receives an export")
            .expect("collector running");
        for rl in req.resource_logs {
            resource_attrs = rl.resource.unwrap_or_default().attributes;
            for sl in rl.scope_logs {
                assert_eq!(sl.scope.unwrap().name, "weft-proxy/access-log");
                records.extend(sl.log_records);
            }
        }
    }
    assert_eq!(
        attr(&resource_attrs, "service.name"),
        Some(&s("httpbin.foo"))
    );
    assert_eq!(
        attr(&resource_attrs, "service.instance.id"),
        Some(&s("httpbin-0.foo"))
    );

    let first = &records[0];
    assert_eq!(
        first.body.as_ref().and_then(|b| b.value.as_ref()),
        Some(&s(r#"{"code":418,"path":"/status/418","sni":null}"#))
    );
    assert_eq!(
        attr(&first.attributes, "code"),
        Some(&any_value::Value::IntValue(418))
    );
    assert_eq!(attr(&first.attributes, "path"), Some(&s("/status/418")));
    // A null field is left out of the attributes.
    assert_eq!(attr(&first.attributes, "sni"), None);
    assert_eq!(first.time_unix_nano, 1_606_339_578_409_000_000);
    assert_eq!(first.trace_id, vec![0xab; 16]);
    assert_eq!(first.span_id, vec![0xcd; 8]);

    let second = &records[1];
    assert_eq!(
        second.body.as_ref().and_then(|b| b.value.as_ref()),
        Some(&s("HTTP/1.1 done"))
    );
    assert!(second.attributes.is_empty() && second.trace_id.is_empty());
    weft_testkit::wait::eventually("export counted", Duration::from_secs(10), || async {
        stats.written() == 2
    })
    .await;
    assert_eq!(stats.dropped(), 0);
}

#[tokio::test]
async fn a_stalled_collector_costs_records_not_waiting() {
    let (endpoint, mut rx) = collector(true).await;
    let stats = Arc::new(LogStats::default());
    let exporter = OtlpLogs::start(&endpoint, Vec::new(), settings(2, 1), stats.clone()).unwrap();
    let f = Fixture::new();
    let rec = f.http();
    let fmt = Formatter::new(&LogFormat::Text(parse("%RESPONSE_CODE%\n")), "h");
    exporter.offer(record(&fmt.http(&rec), rec.start, None));
    // The first batch is in flight (and never answered) ...
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the first export arrives");
    // ... so the queue (2) fills and further records are dropped at once.
    for _ in 0..5 {
        exporter.offer(record(&fmt.http(&rec), rec.start, None));
    }
    assert_eq!(stats.dropped(), 3);
    assert_eq!(stats.written(), 0);
}

#[tokio::test]
async fn an_absent_collector_drops_and_counts_failed_exports() {
    // A port nothing listens on.
    let endpoint = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let stats = Arc::new(LogStats::default());
    let exporter = OtlpLogs::start(&endpoint, Vec::new(), settings(16, 4), stats.clone()).unwrap();
    let f = Fixture::new();
    let rec = f.http();
    let fmt = Formatter::new(&LogFormat::Text(parse("%RESPONSE_CODE%\n")), "h");
    for _ in 0..3 {
        exporter.offer(record(&fmt.http(&rec), rec.start, None));
    }
    weft_testkit::wait::eventually("failed export counted", Duration::from_secs(10), || async {
        stats.dropped() == 3 && stats.export_failures() >= 1
    })
    .await;
}

#[test]
fn no_runtime_no_exporter() {
    let stats = Arc::new(LogStats::default());
    assert!(
        OtlpLogs::start(
            "127.0.0.1:4317",
            Vec::new(),
            ExportSettings::default(),
            stats
        )
        .is_none()
    );
}
