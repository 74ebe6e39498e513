"""Studies built on the pipeline's stages: the method comparison (:mod:`.benchmark`), the
sensitivity analysis (:mod:`.sensitivity`) and the self-supervised ablation (:mod:`.ablation`).
:mod:`.common` holds what they share: data sets, the one PCA -> cluster -> score cell and tables."""
