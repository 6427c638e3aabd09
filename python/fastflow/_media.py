"""Images for ``log_image`` and ``log_table``: arrays to PIL images, previews, ``Image``.

numpy and Pillow are imported only when an image is handled, so that importing fastflow
never loads them.
"""

from __future__ import annotations

import sys
import warnings

# The longer side of the ``.webp`` preview stored next to every logged image.
PREVIEW_SIZE = 256

_ARRAY_KINDS = {
    "b": "bool",
    "i": "signed integer",
    "u": "unsigned integer",
    "f": "floating",
}


def _pil_image_module():
    try:
        from PIL import Image as pil_image
    except ImportError as e:
        raise ImportError(
            "Pillow is required to serialize a numpy array as an image. "
            "Please install it via: `pip install Pillow`"
        ) from e
    return pil_image


def preview(image, max_size=PREVIEW_SIZE):
    """``image`` scaled so that its longer side is ``max_size`` (smaller images grow)."""
    width, height = image.size
    if width > height:
        size = (max_size, int(height * (max_size / width)))
    else:
        size = (int(width * (max_size / height)), max_size)
    return image.resize(size)


def _to_uint8(pixels):
    import numpy as np

    is_integer = np.issubdtype(pixels.dtype, np.integer)
    top = 255 if is_integer else 1
    low, high = pixels.min(), pixels.max()
    if low < 0 or high > top:
        if is_integer:
            raise ValueError(
                "Integer pixel values out of acceptable range [0, 255]. "
                f"Found minimum value {low} and maximum value {high}. "
                "Ensure all pixel values are within the specified range."
            )
        warnings.warn(
            "Float pixel values out of acceptable range [0.0, 1.0]. "
            f"Found minimum value {low} and maximum value {high}. "
            "Rescaling values to [0.0, 1.0] with min/max scaler.",
            stacklevel=3,
        )
        pixels = (pixels - low) / (high - low)
    if not is_integer:
        pixels = pixels * 255
    return pixels.astype(np.uint8)


def array_to_pil(array):
    """A PIL image of an HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array of bools, integers
    in [0, 255] or floats in [0, 1] (other floats are min/max scaled, with a warning)."""
    pil_image = _pil_image_module()
    if array.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(
            f"Invalid array data type: '{array.dtype}'. "
            f"Must be one of {list(_ARRAY_KINDS.values())}"
        )
    if array.ndim not in (2, 3):
        raise ValueError(f"`image` must be a 2D or 3D array but got image shape: {array.shape}")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        raise ValueError(f"Invalid channel length: {array.shape[2]}. Must be one of [1, 3, 4]")
    if array.ndim == 3 and array.shape[2] == 1:
        # PIL has no mode for a one-channel third axis.
        array = array[:, :, 0]
    return pil_image.fromarray(_to_uint8(array))


def _is_array(obj) -> bool:
    # An array cannot exist unless numpy was imported.
    if "numpy" not in sys.modules:
        return False
    import numpy as np

    return isinstance(obj, np.ndarray)


def _is_pil_image(obj) -> bool:
    if "PIL.Image" not in sys.modules:
        return False
    import PIL.Image

    return isinstance(obj, PIL.Image.Image)


def to_pil(image):
    """The PIL image of what ``log_image`` accepts: an array, a PIL image or an ``Image``."""
    if _is_array(image):
        return array_to_pil(image)
    if isinstance(image, Image):
        return image.to_pil()
    if _is_pil_image(image):
        return image
    raise TypeError(
        f"Unsupported image object type: {type(image)}. "
        "`image` must be one of numpy.ndarray, "
        "PIL.Image.Image, and mlflow.Image."
    )


def looks_like_image(obj) -> bool:
    """What ``log_table`` stores as an image file: anything that can save and resize itself."""
    return (
        callable(getattr(obj, "save", None))
        and callable(getattr(obj, "resize", None))
        and hasattr(obj, "size")
    )


class Image:
    """An image held as a PIL image, made from an array, a nested list, a PIL image or the
    path of an image file; ``log_image`` and ``log_table`` accept it."""

    def __init__(self, image):
        try:
            pil_image = _pil_image_module()
        except ImportError as e:
            raise ImportError(
                "`mlflow.Image` requires Pillow to serialize a numpy array as an image. "
                "Please install it via: `pip install Pillow`."
            ) from e
        if isinstance(image, str):
            self.image = pil_image.open(image)
        elif isinstance(image, list) or _is_array(image):
            import numpy as np

            self.image = array_to_pil(np.array(image))
        elif isinstance(image, pil_image.Image):
            self.image = image
        else:
            raise TypeError(
                f"Unsupported image object type: {type(image)}. "
                "`image` must be one of numpy.ndarray, "
                "PIL.Image.Image, or a filepath to an image."
            )
        self.size = self.image.size

    def to_list(self):
        """The pixels, row after row."""
        # Newer Pillow renamed getdata: the old name warns there and goes in Pillow 14.
        flattened = getattr(self.image, "get_flattened_data", None)
        return list(flattened() if flattened is not None else self.image.getdata())

    def to_array(self):
        import numpy as np

        return np.array(self.image)

    def to_pil(self):
        return self.image

    def save(self, path):
        self.image.save(path)

    def resize(self, size):
        """A new ``Image`` of ``size`` (width, height)."""
        return Image(self.image.resize(size))
