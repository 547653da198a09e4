//! `edgerag-compose PLUG... SOCKET OUTPUT`: writes SOCKET with its imports satisfied by the PLUGs' exports.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [plugs @ .., socket, output] = args.as_slice() else {
        eprintln!("usage: edgerag-compose PLUG.wasm... SOCKET.wasm OUTPUT.wasm");
        return ExitCode::from(2);
    };
    if plugs.is_empty() {
        eprintln!("usage: edgerag-compose PLUG.wasm... SOCKET.wasm OUTPUT.wasm");
        return ExitCode::from(2);
    }
    match compose::plug_files(plugs, socket, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
