//! Lambda entry point: JSON logs, settings and AWS clients from the environment, then
//! the runtime loop. All logic is in the library (`sphinx_tiler::handler`).

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use sphinx_core::store::S3Store;
use sphinx_core::SqsQueue;
use sphinx_tiler::config::Config;
use sphinx_tiler::handler::{deadline_from_epoch_ms, Tiler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The same binary renders documents in a child process under hard limits.
    sphinx_core::isolate::run_child_if_requested();
    let started = std::time::Instant::now();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_current_span(false)
        .init();
    let config = Config::from_env()?;
    let sdk = aws_config::load_from_env().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(config.s3_force_path_style)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let tiler = Arc::new(Tiler::new(
        Arc::new(S3Store::new(s3, config.bucket.clone())),
        Arc::new(SqsQueue::new(sqs.clone(), config.infer_queue_url.clone())),
        Arc::new(SqsQueue::new(sqs, config.ingest_queue_url.clone())),
        config,
    ));
    tracing::info!(
        init_ms = started.elapsed().as_secs_f64() * 1e3,
        "initialized"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let tiler = tiler.clone();
        async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            tracing::info!(deadline_ms = event.context.deadline, "invoked");
            sphinx_tiler::invoke(&tiler, event.payload, deadline)
                .await
                .map_err(|e| lambda_runtime::Error::from(sphinx_core::error_record::describe(&e)))
        }
    }))
    .await
}
