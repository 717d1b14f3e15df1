from .viewer_montage import GenemMontageViewer, write_montage
