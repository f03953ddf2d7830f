"""DeepLabV3+ and its parts, one module per idea in the order the course teaches them."""

from deeplab.models.aspp import ASPP, ImagePooling, atrous_rates_for
from deeplab.models.atrous import ConvBNReLU, SeparableConv2d, receptive_field
from deeplab.models.backbone import resnet_backbone, resnet_v1c_stem
from deeplab.models.decoder import Decoder, DeepLabV3Head
from deeplab.models.deeplabv3plus import DeepLabV3Plus, FCNHead, build_empty_model, build_model
from deeplab.models.weights import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "ASPP",
    "CheckpointError",
    "ConvBNReLU",
    "Decoder",
    "DeepLabV3Head",
    "DeepLabV3Plus",
    "FCNHead",
    "ImagePooling",
    "SeparableConv2d",
    "atrous_rates_for",
    "build_empty_model",
    "build_model",
    "load_checkpoint",
    "receptive_field",
    "resnet_backbone",
    "resnet_v1c_stem",
    "save_checkpoint",
]
