//! `host-config`: check, compile and inspect host configurations.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use host_config::tool::read_module;
use host_config::{compile_file, describe, load_file, summary};

const USAGE: &str = "\
usage: host-config check FILE.toml
       host-config compile FILE.toml -o OUT.bin
       host-config show OUT.bin";

enum Command {
    Check(PathBuf),
    Compile { input: PathBuf, output: PathBuf },
    Show(PathBuf),
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["-h" | "--help" | "help"] => Ok(Command::Help),
        ["check", file] => Ok(Command::Check(file.into())),
        ["show", file] => Ok(Command::Show(file.into())),
        ["compile", file, "-o", out] | ["compile", "-o", out, file] => Ok(Command::Compile {
            input: file.into(),
            output: out.into(),
        }),
        ["compile", ..] => Err("compile needs an input file and -o OUT.bin".into()),
        [cmd, ..] if !["check", "show"].contains(cmd) => Err(format!("unknown command `{cmd}`")),
        [cmd, ..] => Err(format!("{cmd} takes exactly one file")),
        [] => Err("no command given".into()),
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Help => println!("{USAGE}"),
        Command::Check(file) => println!("ok: {}", summary(&load_file(&file)?)),
        Command::Compile { input, output } => {
            let module = compile_file(&input)?;
            write(&output, &module)?;
            println!("wrote {} ({} bytes)", output.display(), module.len());
        }
        Command::Show(file) => print!("{}", describe(&read_module(&file)?)),
    }
    Ok(())
}

/// Writes beside the target and renames, so an interrupted run never leaves
/// a half-written module where the image build would pick it up.
fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            format!("{}: cannot write: {e}", path.display())
        })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("host-config: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
