"""SAE features: what a feature means and what it does.

- Seed S1's study: probe sets, feature extraction with padding masked, rankings and category
  specialists, the comparison across SAEs and layers, token highlighting (analyses `features`,
  `feature_layers`, `highlight`).
- Dashboards, steering, ablation and attribution (analyses `dashboard`, `steer`, `ablate`, `attribute`).
- Feature pages on demand (`store`): a dictionary's whole-dictionary statistics, cached in the run,
  feature pages, the feature list and the features of a text (the explorer's data).

Pure functions over a model and an SAE; the thin analyses in interp.analyses call them.
Layer 2: uses models, data, sae; analyses use it.
"""
