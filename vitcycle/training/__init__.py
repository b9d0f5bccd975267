"""CycleGAN training: the LightningModule (`cyclegan`), its option groups (`options`), losses,
the image pool, EMA, compilation, callbacks, pretraining and the LightningCLI (`cli`)."""
