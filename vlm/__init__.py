"""The anatomically aware vision-language model: ``vlm.load(checkpoint_dir).run(study, instruction)``."""

from cardiovlm.vlm.checkpoint_format import CheckpointError
from cardiovlm.vlm.checkpoint_io import load_checkpoint as load
from cardiovlm.vlm.config import ANSWER_CLASSES, CardioVLMConfig, ConfigError
from cardiovlm.vlm.model import CardioVLM, VLMOutput
from cardiovlm.vlm.result import VLMResult
from cardiovlm.vlm.text_encoder import TextEncoderUnavailable

__all__ = ["ANSWER_CLASSES", "CardioVLM", "CardioVLMConfig", "CheckpointError", "ConfigError",
           "TextEncoderUnavailable", "VLMOutput", "VLMResult", "load"]
