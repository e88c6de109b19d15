"""Seed S1's SAE feature study: probe sets, feature extraction with padding masked, rankings and
category specialists, the comparison across SAEs and layers, token highlighting.

Pure functions over a model and an SAE; the analyses `features`, `feature_layers` and `highlight`
(interp.analyses) are their thin entry points. Layer 2: uses models, data, sae; analyses use it.
"""
