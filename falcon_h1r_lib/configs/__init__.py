"""The six notebook stage configs, one module each; importing this package registers them in
``falcon_h1r_lib.config.STAGE_CONFIGS``."""

from falcon_h1r_lib.configs.architecture import ArchitectureConfig
from falcon_h1r_lib.configs.curation import CurationConfig
from falcon_h1r_lib.configs.deepconf import DeepConfConfig
from falcon_h1r_lib.configs.evaluation import EvaluationConfig
from falcon_h1r_lib.configs.rl import RLStageConfig
from falcon_h1r_lib.configs.sft import SFTStageConfig

__all__ = ["ArchitectureConfig", "CurationConfig", "SFTStageConfig", "RLStageConfig", "EvaluationConfig",
           "DeepConfConfig"]
