"""Attribution graphs (Ameisen et al. 2025): a prompt's computation traced through per-layer
transcoders. `replacement` is the local replacement model, `graph` the direct effects between
nodes, `prune` influence, pruning and the graph scores, `export` the JSON and HTML files."""
