"""RELION adapter for GenEM: three External-job programs (simulate, translate, denoise).

The programs hold no numerics: each maps RELION's inputs and parameters onto the engine's API and the
engine's results onto RELION pipeline nodes. ``genem_relion.job`` implements RELION's External-job contract
(arguments, exit files, abort, progress, output nodes in the running RELION's format) once for all three.
"""
