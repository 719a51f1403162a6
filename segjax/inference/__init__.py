"""Segmenting images with a trained model: the one inference path (whole, slide, scales,
flip) shared by evaluation, predict and export, split evaluation, and pictures."""
