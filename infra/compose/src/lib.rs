//! Build-time composition: plug a component's exports (the auth component's `edgerag:platform/auth`) into
//! another component's matching imports, producing one self-contained component that runs unchanged on
//! real Spin and on edgerag's host.
//!
//! It only rewires components; it must not change what either component does.

#![forbid(unsafe_code)]

use std::path::Path;

use anyhow::Context;
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

/// Plugs `plug`'s exports into `socket`'s imports and returns the composed component's bytes.
/// Fails if the socket imports nothing that the plug exports.
pub fn plug(plug: &[u8], socket: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let socket = Package::from_bytes("edgerag:socket", None, socket.to_vec(), graph.types_mut())
        .context("cannot read the socket component")?;
    let socket = graph.register_package(socket)?;
    let plug = Package::from_bytes("edgerag:plug", None, plug.to_vec(), graph.types_mut())
        .context("cannot read the plug component")?;
    let plug = graph.register_package(plug)?;
    wac_graph::plug(&mut graph, vec![plug], socket)?;
    graph
        .encode(EncodeOptions::default())
        .context("cannot encode the composition")
}

/// [`plug`] on files.
pub fn plug_files(plug_path: &Path, socket_path: &Path, output: &Path) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let composed = plug(&read(plug_path)?, &read(socket_path)?).with_context(|| {
        format!(
            "plugging {} into {}",
            plug_path.display(),
            socket_path.display()
        )
    })?;
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(output, composed).with_context(|| format!("cannot write {}", output.display()))
}
