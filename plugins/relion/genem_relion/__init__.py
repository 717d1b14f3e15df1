"""RELION adapter for GenEM: four External-job programs (simulate, translate, denoise, pick).

The programs hold no numerics: each maps RELION's inputs and parameters onto the engine's API and the
engine's results onto RELION pipeline nodes. RELION's External-job contract is implemented once for all four,
in modules by concern (``contract``, ``arguments``, ``nodes``, ``lifecycle``, ``supervisor``; ``genem_relion.job``
gathers their names): arguments, exit files, abort, progress lines in run.out, output nodes in the running
RELION's format.
"""
