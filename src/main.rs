use clap::Parser;

fn main() {
    let cli = packrun::cli::Cli::parse();
    std::process::exit(packrun::main(cli));
}
