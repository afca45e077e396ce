//! `tandem`: the collaborative editing server.

use clap::Parser;
use server::config::{Cli, Command};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            server::telemetry::init_logging(args.log_format);
            let app = server::app::Application::build(args.into_config()?).await?;
            app.run_until_stopped().await
        }
        Command::AiPeer(args) => {
            server::telemetry::init_logging(args.log_format);
            let stop = tokio_util::sync::CancellationToken::new();
            let on_signal = stop.clone();
            actix_web::rt::spawn(async move {
                server::app::wait_for_signal().await;
                on_signal.cancel();
            });
            server::ai::process::run(args.into_config()?, stop).await
        }
    }
}
