//! The `adt-runner` command.

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ADT_RUNNER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let cli = match adt_runner::cli::Cli::try_parse_ordered() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // autopkgtest exits 20 on bad arguments (2 means "skipped")
            std::process::exit(if e.use_stderr() {
                adt_runner::verdict::ERROR
            } else {
                0
            });
        }
    };
    std::process::exit(adt_runner::cli::main(cli, command_line));
}
