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
    }
}
