"""genem - pick particles: a trained GenEM picker (or the training-free DoG blob picker) on micrographs."""
import os

from pwem.objects import SetOfCoordinates
from pyworkflow.protocol import params

from .. import convert
from .protocol_base import ProtGenemBase

OUT_COORDS = "outputCoordinates"


class ProtGenemPick(ProtGenemBase):
    """Pick particles with a fully convolutional centre-heatmap picker trained by `genem pick train` (on GenEM
    simulations, translated simulations and/or labelled micrographs), or, without a model, with the training-free
    difference-of-Gaussians blob picker (as RELION's LoG picking).

    Micrographs are Fourier-binned to the picker's pixel size; the coordinates come back in the micrographs' own
    pixels, with the picker's score as _rlnAutopickFigureOfMerit. The box of the coordinates is 1.5 x the
    particle diameter (even)."""
    _label = "pick particles"
    _possibleOutputs = {OUT_COORDS: SetOfCoordinates}

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputMicrographs", params.PointerParam, pointerClass="SetOfMicrographs",
                      label="Micrographs", important=True, help="Micrographs to pick (their sampling rate is used).")
        form.addParam("modelDir", params.PathParam, default="", label="Picker folder",
                      help="A picker folder written by `genem pick train` (it knows its particle diameter and "
                           "threshold). Empty: the training-free difference-of-Gaussians picker.")
        form.addParam("diameter", params.FloatParam, default=0.0, condition="not modelDir",
                      label="Particle diameter (A)", help="For the difference-of-Gaussians picker.")
        form.addParam("threshold", params.FloatParam, default=None, allowsNull=True, label="Threshold",
                      help="Keep picks scoring at least this. Empty: the picker's own (chosen on its training "
                           "data); 3 robust standard deviations for the DoG picker.")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=False, label="Use GPU")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU id")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.pickStep, needsGPU=self.useGpu.get())
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _inputStar(self):
        return os.path.abspath(self._getExtraPath("input_micrographs.star"))

    def _outDir(self):
        return os.path.abspath(self._getExtraPath("picks"))

    def convertInputStep(self):
        convert.micrographs_to_star(self.inputMicrographs.get(), self._inputStar())

    def pickStep(self):
        if self.modelDir.get():
            picker = ["--model", os.path.abspath(self.modelDir.get()), "--device", self._device()]
        else:
            picker = ["--method", "dog", "--diameter-A", self.diameter.get()]
        args = ["apply"] + picker + ["--micrographs", self._inputStar(), "--out", self._outDir()]
        if self.threshold.get() is not None:
            args += ["--threshold", self.threshold.get()]
        self.runGenem("pick", args)

    def createOutputStep(self):
        micSet = self.inputMicrographs.get()
        mics = convert.micrographs_to_star(micSet, self._getTmpPath("micrographs.star"))
        coordSet = self._createSetOfCoordinates(micSet)
        convert.coordinates_from_picks(self._outDir(), coordSet, mics)
        self._defineOutputs(**{OUT_COORDS: coordSet})
        self._defineSourceRelation(self.inputMicrographs, coordSet)

    def _validate(self):
        errors = []
        mics = self.inputMicrographs.get()
        if mics is not None and mics.getSize() == 0:
            errors.append("The input set has no micrographs.")
        if self.modelDir.get():
            if not os.path.isdir(self.modelDir.get()):
                errors.append("Picker folder not found: %s" % self.modelDir.get())
        elif not self.diameter.get() or self.diameter.get() <= 0:
            errors.append("Without a picker folder, give the particle diameter (A) for the DoG picker.")
        return errors

    def _summary(self):
        if not hasattr(self, OUT_COORDS):
            return ["Outputs not ready yet."]
        coords = getattr(self, OUT_COORDS)
        return ["%d particles picked on %d micrographs (box %d px) with %s."
                % (coords.getSize(), self.inputMicrographs.get().getSize(), coords.getBoxSize(),
                   os.path.basename(self.modelDir.get()) if self.modelDir.get() else "the DoG picker")]

    def _methods(self):
        if not hasattr(self, OUT_COORDS):
            return []
        how = ("a picker trained with GenEM [Zhang2023CryoGEM]" if self.modelDir.get()
               else "a difference-of-Gaussians blob picker (GenEM [Zhang2023CryoGEM])")
        return ["%d particles were picked with %s." % (getattr(self, OUT_COORDS).getSize(), how)]
