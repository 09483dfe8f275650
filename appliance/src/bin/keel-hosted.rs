//! `keel-hosted`: the appliance's HTTP endpoints as a Linux process. See
//! `appliance::hosted::USAGE`.

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use appliance::hosted;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match hosted::parse_args(&args) {
        Ok(o) => o,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("keel-hosted: {message}");
            }
            eprint!("{}", hosted::USAGE);
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(options.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("keel-hosted: cannot listen on {}: {e}", options.listen);
            return ExitCode::FAILURE;
        }
    };
    let tls_listener = match options.listen_tls.map(TcpListener::bind).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "keel-hosted: cannot listen on {:?}: {e}",
                options.listen_tls
            );
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("keel-hosted: listening on http://{addr}/"),
        Err(e) => eprintln!("keel-hosted: {e}"),
    }
    if let Some(l) = &tls_listener {
        match l.local_addr() {
            Ok(addr) => println!("keel-hosted: listening on https://{addr}/"),
            Err(e) => eprintln!("keel-hosted: {e}"),
        }
    }
    let _ = std::io::stdout().flush();
    match hosted::serve(
        listener,
        tls_listener,
        &options.config,
        options.state.as_deref(),
        &options.host_disks,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-hosted: {e}");
            ExitCode::FAILURE
        }
    }
}
