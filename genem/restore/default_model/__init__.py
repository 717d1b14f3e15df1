"""The default denoiser shipped with GenEM (model.pt, model.json, model_card.md); load with
``genem.restore.Denoiser.load()``."""
