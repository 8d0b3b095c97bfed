use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = tenant_vault::cli::Cli::parse();
    match tenant_vault::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
