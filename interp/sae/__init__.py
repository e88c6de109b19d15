"""Sparse autoencoders on a frozen base run's activations (SAELens classes, Lightning loop).

spec      the `sae` config -> a SAELens training SAE
harvest   activations at one hook of any base model, padding excluded
cache     on-disk activation cache with a manifest, shared by every job of a sweep
source    the training/validation data of an SAE run (cache or streamed buffer)
metrics   SAELens-defined metrics: MSE, explained variance, L0, dead/dense, CE recovered
task      the LightningModule
"""

GROUP = "sae"   # the config group of SAE specs (conf/sae/); sae=pretrained loads one
