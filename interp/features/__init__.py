"""SAE features: what a feature means and what it does.

- Seed S1's study: probe sets, feature extraction with padding masked, rankings and category
  specialists, the comparison across SAEs and layers, token highlighting (analyses `features`,
  `feature_layers`, `highlight`).
- Dashboards, steering, ablation and attribution (analyses `dashboard`, `steer`, `ablate`, `attribute`).

Pure functions over a model and an SAE; the thin analyses in interp.analyses call them.
Layer 2: uses models, data, sae; analyses use it.
"""
