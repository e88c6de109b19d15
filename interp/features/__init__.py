"""SAE features: what a feature means and what it does (dashboards, steering, ablation, attribution).

Pure functions over (model, sae, tokens); the thin analyses in interp.analyses call them.
"""
