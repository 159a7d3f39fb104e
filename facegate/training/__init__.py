"""Learning on top of the pretrained embedding: metric-learning losses, batch sampling and augmentation."""
