from .protocol_base import ProtGenemBase
from .protocol_simulate import ProtGenemSimulate
from .protocol_translate import ProtGenemTranslate
from .protocol_denoise import ProtGenemDenoise
from .protocol_pick import ProtGenemPick
