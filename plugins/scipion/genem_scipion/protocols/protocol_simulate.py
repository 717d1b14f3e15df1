"""genem - simulate: annotated micrographs and particles with exact ground truth."""
import os

from pyworkflow.protocol import params

from .protocol_base import DATASET_OUTPUTS, ProtGenemBase

NOISE_MODES = ["poisson", "snr", "none"]


class ProtGenemSimulate(ProtGenemBase):
    """Simulate cryo-EM micrographs of a virtual specimen (a map or an atomic model in random poses inside
    vitreous ice, imaged with the CTF, envelopes and detector noise) and extract the particles.

    Every output comes with its exact ground truth: the micrographs with their CTF, the particle centres as
    coordinates, the particles with their true projection alignment and CTF, and the structure's potential as a
    volume. Runs the GenEM engine in its own environment (`genem simulate`)."""
    _label = "simulate"
    _possibleOutputs = DATASET_OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Specimen")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume", allowsNull=True,
                      label="Input volume",
                      help="A density map to image (its sampling rate is used). Leave empty to use the "
                           "structure file below, or the engine's built-in test structure when that is empty too.")
        form.addParam("structureFile", params.FileParam, default="", label="Structure file",
                      help="An atomic model (.pdb/.cif) or a map (.mrc/.map) to image, used when no input volume "
                           "is given. Atomic models are turned into a potential with Peng scattering factors.")
        form.addSection(label="Micrographs")
        form.addParam("nMicrographs", params.IntParam, default=2, validators=[params.Positive],
                      label="Number of micrographs")
        form.addParam("micrographSize", params.IntParam, default=512, validators=[params.Positive],
                      label="Micrograph size (px)", help="Square micrographs of this many pixels per side.")
        form.addParam("pixelSize", params.FloatParam, default=2.0, validators=[params.Positive],
                      label="Pixel size (A)")
        form.addParam("boxSize", params.IntParam, default=64, validators=[params.Positive],
                      label="Particle box (px)", help="Extraction box, even.")
        form.addParam("particlesPerMic", params.IntParam, default=10, validators=[params.Positive],
                      label="Particles per micrograph")
        form.addParam("defocus", params.StringParam, default="10000,25000", label="Defocus (A)",
                      help="Underfocus in Angstrom: one value, or 'low,high' drawn per micrograph.")
        form.addParam("voltage", params.FloatParam, default=300.0, label="Voltage (kV)")
        form.addParam("cs", params.FloatParam, default=2.7, label="Spherical aberration (mm)")
        form.addParam("ampContrast", params.FloatParam, default=0.1, label="Amplitude contrast")
        form.addSection(label="Noise")
        form.addParam("noiseMode", params.EnumParam, choices=NOISE_MODES, default=0, label="Noise model",
                      display=params.EnumParam.DISPLAY_HLIST,
                      help="poisson: electron dose and shot noise; snr: Gaussian noise at a target SNR; "
                           "none: clean images.")
        form.addParam("dose", params.FloatParam, default=40.0, condition="noiseMode==0", label="Dose (e/A^2)")
        form.addParam("snr", params.FloatParam, default=0.1, condition="noiseMode==1", label="SNR")
        form.addParam("seed", params.IntParam, default=0, label="Random seed",
                      help="The same seed and parameters give the same dataset.")

    # ------------------------------------------------------------------ steps
    def _insertAllSteps(self):
        # The engine simulates on CPU at useful speed; a GPU is not needed.
        self._insertFunctionStep(self.simulateStep, needsGPU=False)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    def _engineArgs(self):
        args = ["--out", os.path.abspath(self._datasetDir()),
                "--n-micrographs", self.nMicrographs.get(),
                "--micrograph-size", self.micrographSize.get(),
                "--pixel-size-A", self.pixelSize.get(),
                "--box", self.boxSize.get(),
                "--particles", self.particlesPerMic.get(),
                "--defocus-A", self.defocus.get(),
                "--voltage-kV", self.voltage.get(),
                "--cs-mm", self.cs.get(),
                "--amplitude-contrast", self.ampContrast.get(),
                "--noise-mode", NOISE_MODES[self.noiseMode.get()],
                "--seed", self.seed.get()]
        if self.noiseMode.get() == 0:
            args += ["--dose", self.dose.get()]
        elif self.noiseMode.get() == 1:
            args += ["--snr", self.snr.get()]
        if self.inputVolume.get() is not None:
            vol = self.inputVolume.get()
            args += ["--structure", os.path.abspath(vol.getFileName().split(":")[0]),
                     "--map-pixel-size-A", vol.getSamplingRate()]
        elif self.structureFile.get():
            args += ["--structure", os.path.abspath(self.structureFile.get())]
        return args

    def simulateStep(self):
        self.runGenem("simulate", self._engineArgs())

    def createOutputStep(self):
        sources = [self.inputVolume] if self.inputVolume.get() is not None else []
        self._createDatasetOutputs(self._datasetDir(), sources=sources)

    # ------------------------------------------------------------------ info
    def _validate(self):
        errors = []
        if self.boxSize.get() % 2:
            errors.append("The particle box must be even (got %d px)." % self.boxSize.get())
        if self.boxSize.get() >= self.micrographSize.get():
            errors.append("The particle box (%d px) must be smaller than the micrograph (%d px)."
                          % (self.boxSize.get(), self.micrographSize.get()))
        if self.inputVolume.get() is None and self.structureFile.get():
            path = self.structureFile.get()
            if not os.path.exists(path):
                errors.append("Structure file not found: %s" % path)
            elif os.path.splitext(path)[1].lower() not in (".pdb", ".cif", ".mmcif", ".ent", ".mrc", ".map"):
                errors.append("Structure file %s: expected .pdb, .cif, .mrc or .map" % path)
        try:
            [float(v) for v in self.defocus.get().split(",")]
        except ValueError:
            errors.append("Defocus must be a number or 'low,high' (got %r)." % self.defocus.get())
        if self.noiseMode.get() == 1 and self.snr.get() <= 0:
            errors.append("The SNR must be positive.")
        return errors

    def _summary(self):
        return self._datasetSummary()

    def _methods(self):
        if not hasattr(self, "outputParticles"):
            return []
        src = ("the input volume" if self.inputVolume.get() is not None
               else os.path.basename(self.structureFile.get()) if self.structureFile.get()
               else "the built-in test structure")
        noise = NOISE_MODES[self.noiseMode.get()]
        return ["We simulated %d micrographs of %d x %d pixels at %.3f A/px from %s with GenEM [Zhang2023CryoGEM] "
                "(%s kV, Cs %s mm, defocus %s A, %s noise%s, seed %d) and extracted %d particles in %d px boxes "
                "with their true poses and CTF."
                % (self.nMicrographs.get(), self.micrographSize.get(), self.micrographSize.get(),
                   self.pixelSize.get(), src, self.voltage.get(), self.cs.get(), self.defocus.get(), noise,
                   " at %s e/A^2" % self.dose.get() if noise == "poisson" else
                   " at SNR %s" % self.snr.get() if noise == "snr" else "",
                   self.seed.get(), self.outputParticles.getSize(), self.boxSize.get())]
