"""The anatomically aware vision-language model: ``vlm.load(checkpoint_dir).run(study, instruction)``."""

from vlm.checkpoint_format import CheckpointError
from vlm.checkpoint_io import load_checkpoint as load
from vlm.config import ANSWER_CLASSES, CardioVLMConfig, ConfigError
from vlm.model import CardioVLM, VLMOutput
from vlm.result import VLMResult
from vlm.text_encoder import TextEncoderUnavailable

__all__ = ["ANSWER_CLASSES", "CardioVLM", "CardioVLMConfig", "CheckpointError", "ConfigError",
           "TextEncoderUnavailable", "VLMOutput", "VLMResult", "load"]
