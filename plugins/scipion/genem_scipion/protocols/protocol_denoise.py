"""genem - denoise particles: conditional diffusion restoration of particle images."""
import json
import os

from pwem.objects import SetOfParticles
from pyworkflow.protocol import params

from .. import convert
from .protocol_base import ProtGenemBase

OUT_PARTS = "outputParticles"
ID_COLUMN = "rlnGenemScipionId"


class ProtGenemDenoise(ProtGenemBase):
    """Denoise particle images with a conditional diffusion model and post-processing (Zhang et al. 2024).

    The output set has the same particles, ids, alignment, CTF and sampling rate as the input; only the images
    change. Without a model file the engine's default model is used; models trained with `genem denoise train`
    (for example on a GenEM simulation that matches your data) can be given instead."""
    _label = "denoise particles"
    _possibleOutputs = {OUT_PARTS: SetOfParticles}
    _references = ["Zhang2024Restoration", "Zhang2023CryoGEM"]

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      label="Particles", important=True, help="Particles to denoise (any alignment, with or "
                                                              "without CTF).")
        form.addParam("modelFile", params.PathParam, default="", label="Model folder (optional)",
                      help="A denoising model folder written by `genem denoise train`. Empty: the model shipped "
                           "with GenEM.")
        form.addParam("steps", params.IntParam, default=0, label="Sampling steps",
                      help="Diffusion sampling steps (0: the model's default). Fewer is faster, more is sharper.")
        form.addParam("seed", params.IntParam, default=0, label="Random seed")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True, label="Use GPU",
                       help="Sampling runs on a GPU when one is given, on CPU otherwise (slower).")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU id")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, needsGPU=False)
        self._insertFunctionStep(self.denoiseStep, needsGPU=self.useGpu.get())
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _inputStar(self):
        return os.path.abspath(self._getExtraPath("input_particles.star"))

    def _outDir(self):
        return os.path.abspath(self._getExtraPath("denoised"))

    def convertInputStep(self):
        convert.particles_to_star(self.inputParticles.get(), self._inputStar(), id_column=ID_COLUMN)

    def denoiseStep(self):
        args = ["apply", "--particles", self._inputStar(), "--out", self._outDir(), "--seed", self.seed.get(),
                "--device", self._device()]
        if self.modelFile.get():
            args += ["--model", os.path.abspath(self.modelFile.get())]
        if self.steps.get():
            args += ["--steps", self.steps.get()]
        self.runGenem("denoise", args)

    def createOutputStep(self):
        inSet = self.inputParticles.get()
        run_json = os.path.join(self._outDir(), "denoise_run.json")
        if not os.path.exists(run_json):
            raise RuntimeError("%s: the engine finished but wrote no denoise_run.json" % self._outDir())
        with open(run_json) as f:
            run = json.load(f)
        out_star = run["output"]
        rows = convert.read_relion_star(out_star, "particles", required=("rlnImageName",))
        if len(rows) != inSet.getSize():
            raise RuntimeError("%s: %d particles, the input has %d" % (out_star, len(rows), inSet.getSize()))
        root = run.get("paths_relative_to") or os.path.dirname(out_star)
        if ID_COLUMN in rows[0]:
            by_id = {int(r[ID_COLUMN]): r["rlnImageName"] for r in rows}
        else:  # the engine keeps the input order
            by_id = {p.getObjId(): r["rlnImageName"] for p, r in zip(inSet.iterItems(orderBy="id"), rows)}

        outSet = self._createSetOfParticles()
        outSet.copyInfo(inSet)

        def _relocate(item, row=None):
            index, fn = convert.split_image_name(by_id[item.getObjId()])
            fn = fn if os.path.isabs(fn) else os.path.join(root, fn)
            item.setLocation(index, os.path.relpath(fn))

        outSet.copyItems(inSet, updateItemCallback=_relocate)
        self._defineOutputs(**{OUT_PARTS: outSet})
        self._defineTransformRelation(self.inputParticles, outSet)

    def _validate(self):
        errors = []
        parts = self.inputParticles.get()
        if parts is not None and parts.getSize() == 0:
            errors.append("The input set has no particles.")
        if self.modelFile.get() and not os.path.exists(self.modelFile.get()):
            errors.append("Model file not found: %s" % self.modelFile.get())
        if self.steps.get() < 0:
            errors.append("Sampling steps must be 0 (model default) or positive.")
        return errors

    def _summary(self):
        if not hasattr(self, OUT_PARTS):
            return ["Outputs not ready yet."]
        return ["%d particles denoised (%d px, %.3f A/px) with %s."
                % (self.outputParticles.getSize(), self.outputParticles.getXDim(),
                   self.outputParticles.getSamplingRate(),
                   os.path.basename(self.modelFile.get()) if self.modelFile.get() else "the default model")]

    def _methods(self):
        if not hasattr(self, OUT_PARTS):
            return []
        return ["%d particle images were denoised with a conditional diffusion model and post-processing "
                "[Zhang2024Restoration] as implemented in GenEM [Zhang2023CryoGEM]."
                % self.outputParticles.getSize()]
