use clap::Parser;

fn main() {
    packrun::container::restore_default_sigpipe();
    let cli = packrun::cli::Cli::parse();
    std::process::exit(packrun::main(cli));
}
