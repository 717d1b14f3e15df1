"""The STAR <-> cryoSPARC ``.cs`` conversion lives in the engine (:mod:`genem.io.cs_convert`, :mod:`genem.io.cs`)."""
from genem.io.cs import EXPOSURE_BLOB_FIELDS, SLOT_FIELDS, merge_into, slot_fields, stable_uid  # noqa: F401
from genem.io.cs_convert import UID_COLUMN, cs_dataset_to_star, euler_relion_from_pose_rotvec, pose_rotvec_from_euler_relion, star_to_cs_dataset  # noqa: F401,E501
