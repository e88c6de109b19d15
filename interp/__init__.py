"""interp: an experiment-tracked training framework for mechanistic interpretability.

The package is layered; an import only ever points down (docs/architecture.md):

    errors, files, run_dir, viz        shared plumbing
    models, data                       what is trained and on what (data.batch: the batch format)
    tasks, analyses, sae               LightningModules, analyses (pure functions), sparse autoencoders
    callbacks, registry                Lightning adapters over analyses; task name -> TaskKind
    runs                               loading a run directory back
    training, analyzing                train(cfg), analyze(cfg): what train.py / analyze.py call
"""

__version__ = "0.1.0"
