"""What the GenEM protocols share: calling the engine and turning a GenEM dataset folder into Scipion sets."""
import json
import os

from pwem.objects import (SetOfCTF, SetOfCoordinates, SetOfMicrographs, SetOfParticles, Volume)
from pwem.protocols import EMProtocol

from .. import convert
from ..constants import GROUND_TRUTH_DIR, MICROGRAPHS_STAR, PARTICLES_STAR

OUT_MICS = "outputMicrographs"
OUT_CTF = "outputCTF"
OUT_COORDS = "outputCoordinates"
OUT_PARTS = "outputParticles"
OUT_VOLUME = "outputVolume"

DATASET_OUTPUTS = {OUT_MICS: SetOfMicrographs, OUT_CTF: SetOfCTF, OUT_COORDS: SetOfCoordinates,
                   OUT_PARTS: SetOfParticles, OUT_VOLUME: Volume}


class ProtGenemBase(EMProtocol):
    """Base of the GenEM protocols (not shown in the menus)."""
    _references = ["Zhang2023CryoGEM"]

    def runGenem(self, command, args):
        from .. import Plugin
        Plugin.runGenem(self, command, args)

    def _device(self):
        """The engine's ``--device`` from the protocol's hidden GPU fields (protocols that declare them)."""
        return "cuda:%s" % self.getGpuList()[0] if self.useGpu.get() and self.getGpuList() else "cpu"

    def _datasetDir(self):
        return self._getExtraPath("dataset")

    def _readManifest(self):
        path = os.path.join(self._datasetDir(), "manifest.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def _createDatasetOutputs(self, dataset_dir, sources=()):
        """Micrographs + CTF, coordinates, particles (projection alignment + CTF) and the ground-truth volume of
        a finished GenEM dataset folder."""
        mic_star = os.path.join(dataset_dir, MICROGRAPHS_STAR)
        part_star = os.path.join(dataset_dir, PARTICLES_STAR)
        for path in (mic_star, part_star):
            if not os.path.exists(path):
                raise RuntimeError("%s: the engine finished but wrote no %s" % (dataset_dir, os.path.basename(path)))

        micSet = self._createSetOfMicrographs()
        ctfSet = self._createSetOfCTF()
        mics = convert.micrographs_from_star(mic_star, micSet, ctfSet)

        partSet = self._createSetOfParticles()
        convert.particles_from_star(part_star, partSet, mics_by_name=mics)
        box = partSet.getFirstItem().getXDim()

        coordSet = self._createSetOfCoordinates(micSet)
        convert.coordinates_from_star(part_star, coordSet, mics, box)

        outputs = {OUT_MICS: micSet, OUT_CTF: ctfSet, OUT_COORDS: coordSet, OUT_PARTS: partSet}
        gt_dir = os.path.join(dataset_dir, GROUND_TRUTH_DIR)
        maps = sorted(f for f in os.listdir(gt_dir) if f.endswith(".mrc")) if os.path.isdir(gt_dir) else []
        if maps:
            vol = Volume()
            vol.setLocation(os.path.relpath(os.path.join(gt_dir, maps[0])))
            vol.setSamplingRate(micSet.getSamplingRate())
            outputs[OUT_VOLUME] = vol
        self._defineOutputs(**outputs)
        for src in sources:
            for out in outputs.values():
                self._defineSourceRelation(src, out)
        return outputs

    def _datasetSummary(self):
        if not hasattr(self, OUT_PARTS):
            return ["Outputs not ready yet."]
        mics, parts = getattr(self, OUT_MICS), getattr(self, OUT_PARTS)
        lines = ["%d micrographs (%s px, %.3f A/px) with CTF, %d particles (box %d px) with their true poses."
                 % (mics.getSize(), "x".join(map(str, mics.getDim()[:2])), mics.getSamplingRate(),
                    parts.getSize(), parts.getXDim(), )]
        if hasattr(self, OUT_VOLUME):
            lines.append("Ground-truth volume: %s" % getattr(self, OUT_VOLUME).getFileName())
        return lines
