"""genem - translate noise: give a simulation the noise of real micrographs (unpaired, contrastive translation)."""
import os

from pyworkflow.protocol import params

from .. import convert
from .protocol_base import DATASET_OUTPUTS, ProtGenemBase


class ProtGenemTranslate(ProtGenemBase):
    """Learn the noise of real micrographs and apply it to a GenEM simulation.

    A generator is trained, unpaired, to turn the simulation's micrographs into images whose noise looks like the
    real micrographs' (contrastive patch-wise learning with mask-guided sampling, GenEM). The translated
    micrographs keep every annotation of the simulation: CTF, coordinates, particle poses and the ground-truth
    volume; the particles are extracted again from the translated micrographs."""
    _label = "translate noise"
    _possibleOutputs = DATASET_OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMicrographs", params.PointerParam, pointerClass="SetOfMicrographs",
                      label="Real micrographs", important=True,
                      help="Experimental micrographs whose noise is learned (motion-corrected, not dose-filtered "
                           "is best). They are resampled to the simulation's pixel size, which should not be much finer than theirs.")
        form.addParam("inputSimulation", params.PointerParam, pointerClass="ProtGenemSimulate",
                      label="Simulation", important=True,
                      help="A finished 'genem - simulate' run: its micrographs are translated and all its "
                           "annotations carried over.")
        form.addSection(label="Training")
        form.addParam("trainSteps", params.IntParam, default=None, allowsNull=True, label="Training steps (at most)",
                      help="Optimiser steps of the translator at most; empty: genem translate train's default. "
                           "Validation on held-out real micrographs stops training earlier and keeps the best model.")
        form.addParam("tileSize", params.IntParam, default=None, allowsNull=True, label="Training tile (px)",
                      help="Size of the micrograph tiles used for training, in pixels at the simulation's pixel "
                           "size (the real micrographs are resampled to it); empty: genem translate train's default.")
        form.addParam("batchSize", params.IntParam, default=None, allowsNull=True,
                      expertLevel=params.LEVEL_ADVANCED, label="Batch size",
                      help="Tiles per training step; empty: genem translate train's default.")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True, label="Use GPU",
                       help="Training runs on a GPU when one is given, on CPU otherwise (slow).")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU id")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep, needsGPU=self.useGpu.get())
        self._insertFunctionStep(self.applyStep, needsGPU=self.useGpu.get())
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _simDir(self):
        return os.path.abspath(self.inputSimulation.get()._datasetDir())

    def _modelDir(self):
        return os.path.abspath(self._getExtraPath("model"))

    def _realFiles(self):
        return [os.path.abspath(convert.strip_scipion_suffix(m.getFileName()))
                for m in self.inputMicrographs.get().iterItems(orderBy="id")]

    def trainStep(self):
        self.runGenem("translate", ["train", "--simulated", self._simDir(), "--out", self._modelDir(),
                                    "--real-pixel-size-A", self.inputMicrographs.get().getSamplingRate(),
                                    *self._givenFlags(("--steps", self.trainSteps), ("--tile-px", self.tileSize),
                                                      ("--batch-size", self.batchSize)),
                                    "--seed", self.seed.get(), "--device", self._device(),
                                    "--real"] + self._realFiles())

    @staticmethod
    def _givenFlags(*pairs):
        """``[flag, value, ...]`` for the parameters the user set (empty ones take the engine's defaults)."""
        return [str(x) for flag, param in pairs if param.get() is not None for x in (flag, param.get())]

    def applyStep(self):
        self.runGenem("translate", ["apply", "--model", self._modelDir(), "--simulated", self._simDir(),
                                    "--out", os.path.abspath(self._datasetDir()), "--device", self._device()])

    def createOutputStep(self):
        self._createDatasetOutputs(self._datasetDir(), sources=[self.inputMicrographs])

    def _validate(self):
        errors = []
        sim = self.inputSimulation.get()
        mics = self.inputMicrographs.get()
        if sim is not None and not hasattr(sim, "outputMicrographs"):
            errors.append("The simulation has no outputs yet: run it first.")
        if sim is not None and mics is not None and hasattr(sim, "outputMicrographs"):
            if mics.getSamplingRate() > 2.0 * sim.outputMicrographs.getSamplingRate():
                errors.append("The real micrographs (%.3f A/px) are much coarser than the simulation (%.3f A/px): "
                              "their noise would have to be up-sampled; simulate at a larger pixel size."
                              % (mics.getSamplingRate(), sim.outputMicrographs.getSamplingRate()))
        if sim is not None and hasattr(sim, "outputMicrographs") and \
                min(sim.outputMicrographs.getDim()[:2]) < self.tileSize.get():
            errors.append("The training tile (%d px) is larger than the simulated micrographs (%s px)."
                          % (self.tileSize.get(), "x".join(map(str, sim.outputMicrographs.getDim()[:2]))))
        if self.tileSize.get() % 4:
            errors.append("The training tile must be a multiple of 4 px (got %d)." % self.tileSize.get())
        return errors

    def _summary(self):
        return self._datasetSummary()

    def _methods(self):
        if not hasattr(self, "outputMicrographs"):
            return []
        return ["The noise of %d real micrographs was learned with GenEM's unpaired noise translation "
                "[Zhang2023CryoGEM] (%d steps, %d px tiles, seed %d) and applied to %d simulated micrographs, "
                "keeping their annotations." % (self.inputMicrographs.get().getSize(), self.trainSteps.get(),
                                               self.tileSize.get(), self.seed.get(),
                                               self.outputMicrographs.getSize())]
