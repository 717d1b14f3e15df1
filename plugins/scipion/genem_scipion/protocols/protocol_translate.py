"""genem - translate noise: give a simulation the noise of real micrographs (unpaired, contrastive translation)."""
import os
from collections import OrderedDict

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
                           "is best). They should have about the simulation's pixel size.")
        form.addParam("inputSimulation", params.PointerParam, pointerClass="ProtGenemSimulate",
                      label="Simulation", important=True,
                      help="A finished 'genem - simulate' run: its micrographs are translated and all its "
                           "annotations carried over.")
        form.addSection(label="Training")
        form.addParam("iterations", params.IntParam, default=2000, validators=[params.Positive],
                      label="Training iterations")
        form.addParam("patchSize", params.IntParam, default=256, validators=[params.Positive],
                      label="Patch size (px)", help="Size of the micrograph crops used for training.")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True, label="Use GPU",
                       help="Training runs on a GPU when one is given, on CPU otherwise (slow).")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU id")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.trainStep, needsGPU=self.useGpu.get())
        self._insertFunctionStep(self.applyStep, needsGPU=self.useGpu.get())
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _device(self):
        return "cuda:%s" % self.getGpuList()[0] if self.useGpu.get() and self.getGpuList() else "cpu"

    def _realStar(self):
        return os.path.abspath(self._getExtraPath("real_micrographs.star"))

    def _simDir(self):
        return os.path.abspath(self.inputSimulation.get()._datasetDir())

    def _modelDir(self):
        return os.path.abspath(self._getExtraPath("model"))

    def convertInputStep(self):
        mics = self.inputMicrographs.get()
        acq = mics.getAcquisition()
        optics = OrderedDict([("rlnOpticsGroupName", "opticsGroup1"), ("rlnOpticsGroup", 1),
                              ("rlnMicrographPixelSize", float(mics.getSamplingRate())),
                              ("rlnVoltage", float(acq.getVoltage() or 300.0)),
                              ("rlnSphericalAberration", float(acq.getSphericalAberration() or 2.7)),
                              ("rlnAmplitudeContrast", float(acq.getAmplitudeContrast() or 0.1))])
        rows = [OrderedDict([("rlnMicrographName", os.path.abspath(convert.strip_scipion_suffix(m.getFileName()))),
                             ("rlnOpticsGroup", 1)]) for m in mics.iterItems(orderBy="id")]
        convert.write_star(self._realStar(), OrderedDict([("optics", [optics]), ("micrographs", rows)]))

    def trainStep(self):
        self.runGenem("translate", ["train", "--sim", self._simDir(), "--real", self._realStar(),
                                    "--out", self._modelDir(), "--iterations", self.iterations.get(),
                                    "--patch-size", self.patchSize.get(), "--seed", self.seed.get(),
                                    "--device", self._device()])

    def applyStep(self):
        self.runGenem("translate", ["apply", "--model", self._modelDir(), "--sim", self._simDir(),
                                    "--out", os.path.abspath(self._datasetDir()), "--device", self._device()])

    def createOutputStep(self):
        self._createDatasetOutputs(self._datasetDir(), sources=[self.inputMicrographs.get()])

    def _validate(self):
        errors = []
        sim = self.inputSimulation.get()
        mics = self.inputMicrographs.get()
        if sim is not None and not hasattr(sim, "outputMicrographs"):
            errors.append("The simulation has no outputs yet: run it first.")
        if sim is not None and mics is not None and hasattr(sim, "outputMicrographs"):
            ratio = mics.getSamplingRate() / sim.outputMicrographs.getSamplingRate()
            if not 0.5 <= ratio <= 2.0:
                errors.append("The real micrographs (%.3f A/px) and the simulation (%.3f A/px) differ in pixel "
                              "size by more than 2x: resample one of them first."
                              % (mics.getSamplingRate(), sim.outputMicrographs.getSamplingRate()))
        if mics is not None and mics.getDim() is not None and min(mics.getDim()[:2]) < self.patchSize.get():
            errors.append("The patch size (%d px) is larger than the real micrographs (%s px)."
                          % (self.patchSize.get(), "x".join(map(str, mics.getDim()[:2]))))
        return errors

    def _summary(self):
        return self._datasetSummary()

    def _methods(self):
        if not hasattr(self, "outputMicrographs"):
            return []
        return ["The noise of %d real micrographs was learned with GenEM's unpaired noise translation "
                "[Zhang2023CryoGEM] (%d iterations, %d px patches, seed %d) and applied to %d simulated micrographs, "
                "keeping their annotations." % (self.inputMicrographs.get().getSize(), self.iterations.get(),
                                               self.patchSize.get(), self.seed.get(),
                                               self.outputMicrographs.getSize())]
