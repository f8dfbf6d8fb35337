//! Starts one hardened sandbox container and runs Python, JavaScript and shell in it through
//! the executor: `cargo run -p sandbox-e2e --example executor_demo`.

use sandbox_core::Language;
use sandbox_e2e::TestSandbox;
use sandbox_protocol::ExecRequest;

#[tokio::main]
async fn main() {
    let sb = TestSandbox::start("multi-language").await;
    println!("sandbox container {} is ready", &sb.id[..12]);
    let programs = [
        (
            Language::Python,
            "def handler(event, context):\n    return {'hello': event['name'], 'id': context.aws_request_id}",
        ),
        (Language::Javascript, "exports.handler = async (e) => ({ sum: e.a + e.b });"),
        (
            Language::Shell,
            "echo \"uid=$(id -u) pids=$(ls /proc | grep -c '^[0-9]')\"; ip link 2>/dev/null || echo no network tools",
        ),
    ];
    for (i, (language, code)) in programs.into_iter().enumerate() {
        let req = ExecRequest {
            execution_id: format!("demo-{i}"),
            language,
            code: code.into(),
            event: Some(serde_json::json!({"name": "world", "a": 40, "b": 2})),
            timeout_ms: 10_000,
            env: Default::default(),
            function_name: None,
            mode: Default::default(),
        };
        let r = sb.executor.execute(&req).await.expect("execution");
        println!(
            "{:<10} {:<9} {:>6.1} ms  return={} stdout={:?}",
            language.as_str(),
            r.status.as_str(),
            r.metrics.duration_ms,
            r.return_value.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            r.stdout.trim()
        );
    }
}
