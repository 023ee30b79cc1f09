"""Networks: the segmentation-network contract, building from a config, drop-path, pretrained weights."""
