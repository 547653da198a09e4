//! Build-time composition: plug components' exports (the auth component's `edgerag:platform/auth`, the
//! search component's `edgerag:platform/retrieve`) into another component's matching imports, producing
//! one self-contained component that runs unchanged on real Spin and on edgerag's host.
//!
//! It only rewires components; it must not change what either component does.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

/// Plugs `plug`'s exports into `socket`'s imports and returns the composed component's bytes.
/// Fails if the socket imports nothing that the plug exports.
pub fn plug(plug: &[u8], socket: &[u8]) -> anyhow::Result<Vec<u8>> {
    plug_all(&[plug], socket)
}

/// Plugs every plug's exports into `socket`'s matching imports (each plug once, in order).
pub fn plug_all(plugs: &[&[u8]], socket: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let socket = Package::from_bytes("edgerag:socket", None, socket.to_vec(), graph.types_mut())
        .context("cannot read the socket component")?;
    let socket = graph.register_package(socket)?;
    let mut ids = Vec::with_capacity(plugs.len());
    for (i, plug) in plugs.iter().enumerate() {
        let name = format!("edgerag:plug{i}");
        let package = Package::from_bytes(&name, None, plug.to_vec(), graph.types_mut())
            .with_context(|| format!("cannot read plug component {}", i + 1))?;
        ids.push(graph.register_package(package)?);
    }
    wac_graph::plug(&mut graph, ids, socket)?;
    graph
        .encode(EncodeOptions::default())
        .context("cannot encode the composition")
}

/// [`plug_all`] on files.
pub fn plug_files(plug_paths: &[PathBuf], socket_path: &Path, output: &Path) -> anyhow::Result<()> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let plugs = plug_paths
        .iter()
        .map(|p| read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let plugs: Vec<&[u8]> = plugs.iter().map(Vec::as_slice).collect();
    let composed = plug_all(&plugs, &read(socket_path)?).with_context(|| {
        let names: Vec<String> = plug_paths.iter().map(|p| p.display().to_string()).collect();
        format!(
            "plugging {} into {}",
            names.join(" and "),
            socket_path.display()
        )
    })?;
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(output, composed).with_context(|| format!("cannot write {}", output.display()))
}
